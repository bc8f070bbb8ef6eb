"""Contract (b): the sandbox answers comparable requests the way the recorded real responses show Alpaca does.

For every recorded bars page, the sandbox is asked for the same endpoint family,
timeframe, window and feed (a recorded symbol the sandbox does not list is
stood in for by a listed one of its class); its answer must have the recorded
envelope, the same bar fields with the same JSON types, the same timestamp
spelling and stamping, and intraday bars in the hours the recording shows.
Assets, the calendar and error bodies are held to their recordings the same way.
The sandbox is checked against Alpaca's recordings, never against the pipeline.
"""

from __future__ import annotations

import base64
import re
from datetime import timedelta

import pandas as pd
import pytest
import requests

from signal9_pipeline_tests.conftest import auth_headers
from signal9_pipeline_tests.contract import corpus

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
STAND_IN = {"us_equity": "AAPL", "crypto": "BTC/USD"}


def json_type(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}[type(value)]


def field_type(field: str, value, *, crypto: bool) -> str:
    """A bar field's JSON type as the recordings show it: prices print as 131 or 131.5 alike (numbers), stock
    volumes and trade counts are integers, crypto volumes fractional numbers."""
    kind = json_type(value)
    exact = field == "n" or (field == "v" and not crypto)
    return "number" if kind == "integer" and not exact else kind


@pytest.fixture(scope="module")
def server(sandbox):
    return sandbox


@pytest.fixture
def settings(server):
    def apply(**values):
        requests.put(f"{server.url}/_sandbox/settings", json=values, timeout=10).raise_for_status()
    yield apply
    requests.post(f"{server.url}/_sandbox/reset", timeout=10).raise_for_status()


def sandbox_get(server, path: str, params: dict | None = None, headers: dict | None = None) -> requests.Response:
    return requests.get(f"{server.url}{path}", params=params, headers=auth_headers() if headers is None else headers,
                        timeout=60)


def listed(default_universe, asset_class: str) -> set[str]:
    return {a["symbol"] for a in default_universe if a["class"] == asset_class and a["status"] == "active"}


def comparable_request(entry: corpus.Entry, default_universe) -> tuple[str, dict, dict[str, str]]:
    """The sandbox request standing for a recording: path, params, and recorded symbol -> sandbox symbol."""
    asset_class = "crypto" if entry.crypto else "us_equity"
    bars = entry.bars_by_symbol()
    known = listed(default_universe, asset_class)
    symbols = {s: s if s in known else STAND_IN[asset_class] for s in bars}
    stamps = [pd.Timestamp(b["t"]) for recorded in bars.values() for b in recorded]
    first, last = min(stamps), max(stamps)
    if asset_class == "us_equity" and entry.timeframe != "1Day":  # the recorded New York days, whole
        first = _new_york(first.isoformat()).normalize().tz_convert("UTC")
        last = _new_york(last.isoformat()).normalize().tz_convert("UTC") + timedelta(days=1, seconds=-1)
    params = {"symbols": ",".join(sorted(set(symbols.values()))), "timeframe": entry.timeframe, "limit": 10_000,
              "start": first.strftime("%Y-%m-%dT%H:%M:%SZ"), "end": last.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if asset_class == "us_equity":
        params["feed"] = entry.params.get("feed", "iex")
    path = "/v1beta3/crypto/us/bars" if asset_class == "crypto" else "/v2/stocks/bars"
    return path, params, symbols


RECORDED_PAGES = [e for e in corpus.of_kind(*corpus.BARS_KINDS, *corpus.LATEST_KINDS) if e.replayable]


@pytest.mark.parametrize("entry", RECORDED_PAGES, ids=[e.name for e in RECORDED_PAGES])
def test_bars_have_the_recorded_fields_types_and_stamps(entry: corpus.Entry, server, default_universe):
    path, params, symbols = comparable_request(entry, default_universe)
    answer = sandbox_get(server, path, params)
    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert set(page) == {"bars", "next_page_token"}  # the multi-symbol envelope (single pages add "symbol")
    assert isinstance(page["bars"], dict) and json_type(page["next_page_token"]) in ("null", "string")
    for recorded_symbol, recorded in entry.bars_by_symbol().items():
        served = page["bars"].get(symbols[recorded_symbol])
        assert served, f"the sandbox serves no {entry.timeframe} bars of {symbols[recorded_symbol]} for {params}"
        crypto = entry.crypto
        for field in recorded[0]:
            assert {field_type(field, b[field], crypto=crypto) for b in served} == \
                {field_type(field, b[field], crypto=crypto) for b in recorded}, field
        fields = {frozenset(b) for b in recorded}
        if entry.verbatim:
            assert {frozenset(b) for b in served} == fields  # the same bar fields, no more
        else:  # converted from printed output, which may leave columns out
            assert all(set(f) <= set(b) for f in fields for b in served)
        assert all(STAMP.match(b["t"]) for b in served) and all(STAMP.match(b["t"]) for b in recorded)
        if not crypto and entry.timeframe != "1Day":
            assert_intraday_hours_cover(recorded, served)
        if not crypto and entry.timeframe == "1Day":
            assert {_new_york(b["t"]).strftime("%H:%M") for b in served} == {"00:00"} == \
                {_new_york(b["t"]).strftime("%H:%M") for b in recorded}  # stamped midnight New York


def assert_intraday_hours_cover(recorded: list[dict], served: list[dict]) -> None:
    """Both lie in 04:00-20:00 New York, and the sandbox has extended-hours bars wherever the recording has them."""
    recorded_minutes = [_minute_of_day(b["t"]) for b in recorded]
    served_minutes = [_minute_of_day(b["t"]) for b in served]
    assert 4 * 60 <= min(recorded_minutes) and max(recorded_minutes) < 20 * 60
    assert 4 * 60 <= min(served_minutes) and max(served_minutes) < 20 * 60
    if min(recorded_minutes) < 9 * 60 + 30:
        assert min(served_minutes) < 9 * 60 + 30  # pre-market
    if max(recorded_minutes) >= 16 * 60:
        assert max(served_minutes) >= 16 * 60  # the 16:00 bar and post-market


def _new_york(stamp: str) -> pd.Timestamp:
    return pd.Timestamp(stamp).tz_convert("America/New_York")


def _minute_of_day(stamp: str) -> int:
    local = _new_york(stamp)
    return local.hour * 60 + local.minute


CRYPTO_DAILY = [e for e in RECORDED_PAGES if e.crypto and e.timeframe == "1Day"]


@pytest.mark.parametrize("entry", CRYPTO_DAILY, ids=[e.name for e in CRYPTO_DAILY])
def test_crypto_daily_bars_carry_the_recorded_us_central_stamps_in_that_mode_and_utc_midnight_now(
        entry: corpus.Entry, server, settings, default_universe):
    path, params, symbols = comparable_request(entry, default_universe)
    recorded = sorted(b["t"] for bars in entry.bars_by_symbol().values() for b in bars)
    assert all(t[11:] in ("05:00:00Z", "06:00:00Z") for t in recorded)  # the older recordings: midnight US Central
    params |= {"start": recorded[0][:10] + "T00:00:00Z", "end": recorded[-1][:10] + "T23:59:59Z"}
    settings(crypto_daily_stamp="us_central")
    central = sorted(b["t"] for bars in sandbox_get(server, path, params).json()["bars"].values() for b in bars)
    assert central == recorded
    settings(crypto_daily_stamp="utc")
    utc = sorted(b["t"] for bars in sandbox_get(server, path, params).json()["bars"].values() for b in bars)
    assert utc == [t[:10] + "T00:00:00Z" for t in recorded]


def test_crypto_bars_without_trades_come_as_the_recorded_ones(server):
    recorded = [b for e in corpus.of_kind("crypto_bars", "crypto_latest_bars") if e.replayable
                for bars in e.bars_by_symbol().values() for b in bars if b.get("n") == 0]
    assert len(recorded) == 3 and all((b["v"], b["n"], b["vw"]) == (0, 0, 0) for b in recorded)
    assert any(b["o"] != b["c"] for b in recorded)  # quote-priced: the prices still move without trades
    page = sandbox_get(server, "/v1beta3/crypto/us/bars", {"symbols": "AAVE/USD", "timeframe": "1Min", "limit": 10_000,
                                                          "start": "2024-06-03T00:00:00Z",
                                                          "end": "2024-06-03T23:59:00Z"}).json()
    quiet = [b for b in page["bars"]["AAVE/USD"] if b["n"] == 0]
    assert quiet and all(set(b) == set(recorded[0]) and b["v"] == 0 and b["vw"] == 0 for b in quiet)
    assert all(b["l"] <= min(b["o"], b["c"]) and b["h"] >= max(b["o"], b["c"]) for b in quiet)
    assert any(b["o"] != b["c"] for b in quiet)


@pytest.mark.parametrize("name,path,params", [
    ("alpacapy_empty_multi_2022-02-01", "/v2/stocks/bars", {"symbols": "ZZZZQ", "feed": "iex"}),
    ("docsissue59_unknown_crypto_symbol_empty_2023-08-10", "/v1beta3/crypto/us/bars", {"symbols": "DOES/NOTEXIST"}),
])
def test_an_unknown_symbol_is_answered_as_recorded(server, name, path, params):
    answer = sandbox_get(server, path, params | {"timeframe": "1Day", "start": "2022-02-01T00:00:00Z",
                                                 "end": "2022-02-03T00:00:00Z"})
    assert answer.status_code == 200 and answer.json() == corpus.entry(name).body


def test_a_malformed_crypto_pair_is_refused_with_the_recorded_body(server):
    recorded = corpus.entry("ccxt_data_invalid_crypto_symbol")
    answer = sandbox_get(server, recorded.path,
                         recorded.params | {"timeframe": "1Day", "start": "2024-06-03T00:00:00Z"})
    assert answer.status_code == 400 and answer.json() == recorded.body


def recorded_error(name: str) -> dict:
    (entry,) = [e for e in corpus.of_kind("error") if e.name == name]
    return entry.body


def test_the_recent_sip_refusal_is_the_recorded_body_with_its_status(server, settings):
    settings(plan="free")
    end = pd.Timestamp.now(tz="UTC").floor("min")
    answer = sandbox_get(server, "/v2/stocks/bars", {"symbols": "AAPL", "timeframe": "1Min", "feed": "sip",
                                                    "start": (end - timedelta(hours=1)).isoformat(),
                                                    "end": end.isoformat()})
    assert answer.status_code == 403  # Alpaca's FAQ files it under "Why am I getting HTTP 403"
    assert answer.json() == recorded_error("faq_data_subscription_sip_recent")
    older = end - timedelta(minutes=20)
    assert sandbox_get(server, "/v2/stocks/bars", {"symbols": "AAPL", "timeframe": "1Min", "feed": "sip",
                                                  "start": (older - timedelta(hours=1)).isoformat(),
                                                  "end": older.isoformat()}).status_code == 200


def test_data_api_errors_carry_the_recorded_message_only_body(server):
    answer = sandbox_get(server, "/v2/stocks/bars", {"symbols": "SPY,GLD,TLT", "timeframe": "151Min", "limit": 10_000,
                                                    "start": "2025-06-01T00:00:00Z"})
    assert answer.status_code in (400, 422)
    assert answer.json() == recorded_error("issue_data_message_only_timeframe_too_large")
    bad = sandbox_get(server, "/v2/stocks/bars", {"symbols": "AAPL", "timeframe": "7Sec"})
    assert bad.status_code in (400, 422) and set(bad.json()) == {"message"}  # message only, as the data API answers now
    assert bad.json()["message"].startswith(recorded_error("issue_data_422_invalid_timeframe")["message"])


def test_trading_api_errors_have_the_recorded_shapes(server):
    wrong_keys = sandbox_get(server, "/v2/account", headers={"APCA-API-KEY-ID": "PKWRONG", "APCA-API-SECRET-KEY": "x"})
    assert wrong_keys.status_code == 401 and wrong_keys.json() == recorded_error("learn_trading_401_unauthorized")
    no_keys = sandbox_get(server, "/v2/account", headers={})
    assert no_keys.status_code == 403 and no_keys.json() == recorded_error("ccxt_forbidden_message_only")
    bad_parameter = sandbox_get(server, "/v2/assets", {"status": "sideways"})
    assert bad_parameter.status_code == 422
    recorded = recorded_error("flolec_trading_404_symbol_not_found")
    assert {k: json_type(v) for k, v in bad_parameter.json().items()} == {k: json_type(v) for k, v in recorded.items()}
    missing = sandbox_get(server, "/v2/assets/ZZZZQ")
    assert missing.status_code == 404 and set(missing.json()) == set(recorded)


def test_assets_have_the_recorded_fields_and_types(server):
    served = {a["symbol"]: a for a in sandbox_get(server, "/v2/assets").json()}
    recorded_crypto = corpus.of_kind("assets")[0].body
    recorded_equity = [e.body for e in corpus.of_kind("asset") if e.body["class"] == "us_equity"]
    for recorded in [*recorded_crypto[:10], *recorded_equity]:
        mine = next(a for a in served.values() if a["class"] == recorded["class"] and set(recorded) <= set(a))
        assert ({k: json_type(mine[k]) for k in recorded}
                == {k: json_type(v) for k, v in recorded.items()}), recorded["symbol"]
    for recorded in recorded_crypto:
        if recorded["symbol"] in served:
            assert set(recorded) <= set(served[recorded["symbol"]])


def test_the_calendar_has_the_recorded_fields_and_session_hours(server):
    (entry,) = [e for e in corpus.of_kind("calendar") if e.name == "alpacapy_v2_calendar_2025-01-02"]
    (recorded,) = entry.body
    (served,) = sandbox_get(server, "/v2/calendar", {"start": recorded["date"], "end": recorded["date"]}).json()
    assert served == recorded


def test_rate_limit_answers_are_the_recorded_ones(sandbox_factory):
    server = sandbox_factory([], rate_limit_per_minute=1)
    assert sandbox_get(server, "/v2/account").status_code == 200
    trading = sandbox_get(server, "/v2/account")
    assert trading.status_code == 429 and trading.json() == recorded_error("ccxt_trading_429_rate_limit_exceeded")
    data = sandbox_get(server, "/v2/stocks/bars", {"symbols": "AAPL", "timeframe": "1Day"})
    # The data API's own 429 text has no recording with a source to name; its shape is that of the recorded
    # data-API errors: a message only.
    assert data.status_code == 429 and set(data.json()) == set(recorded_error(
        "issue_data_message_only_timeframe_too_large"))


# Facebook's Alpaca id, recorded as "FB" in 2021 asset responses and as "META" in 2025 order and position responses.
FACEBOOK_ID = "fc6a5dcd-4a70-4b8d-b64f-d83a6dae9ba4"
METAVERSE_ETF_ID = "1f1a3f4e-6b59-4f63-9d3b-7c2b2f6c5a10"  # the sandbox's own id for Roundhill's ETF (not recorded)


def meta_history(sandbox_factory, default_universe):
    """A sandbox whose list went through issue 526's sequence: the ETF META -> METV (2022-01-31), FB -> META
    (2022-06-09)."""
    template = next(a for a in default_universe if a["symbol"] == "AAPL")
    etf, facebook = ({**template, "id": METAVERSE_ETF_ID, "symbol": "META"},
                     {**template, "id": FACEBOOK_ID, "symbol": "FB"})
    server = sandbox_factory([etf, facebook])
    for universe, effective in (([{**etf, "symbol": "METV"}, facebook], "2022-01-31"),
                                ([{**etf, "symbol": "METV"}, {**facebook, "symbol": "META"}], "2022-06-09")):
        requests.put(f"{server.url}/_sandbox/universe", params={"effective": effective}, json=universe,
                     timeout=30).raise_for_status()
    return server


def daily_stamps(server, symbol: str, **params) -> list[str]:
    page = sandbox_get(server, "/v2/stocks/bars", {"symbols": symbol, "timeframe": "1Day", **params}).json()
    return [b["t"] for b in page["bars"].get(symbol, [])]


def test_a_symbol_asked_as_of_a_date_answers_its_company_then_as_the_recorded_meta_pages_show(sandbox_factory,
                                                                                              default_universe):
    """The recorded pages (asof 2022-06-09, limit 2) carry Facebook's pre-rename bar of 2022-06-08 under META."""
    server = meta_history(sandbox_factory, default_universe)
    pages = [corpus.entry(f"go_meta_1day_asof_single_page{n}") for n in (1, 2)]
    recorded = [b["t"] for page in pages for b in page.bars_by_symbol()["META"]]
    first = sandbox_get(server, "/v2/stocks/bars", {**pages[0].params, "symbols": "META"}).json()
    token = base64.b64decode(first["next_page_token"]).decode()
    second = sandbox_get(server, "/v2/stocks/bars", {**pages[0].params, "symbols": "META",
                                                     "page_token": first["next_page_token"]}).json()
    assert [b["t"] for b in first["bars"]["META"] + second["bars"]["META"]] == recorded
    assert token.startswith("META|D|")  # as the recorded tokens: base64 of "META|D|<the last bar's stamp>"
    assert [b["t"] for b in pages[0].body["bars"]] == recorded[:2] and base64.b64decode(
        pages[0].body["next_page_token"]).decode().startswith("META|D|")


def test_asof_resolves_a_symbol_the_way_alpacas_reference_and_issue_526_describe(sandbox_factory, default_universe):
    server = meta_history(sandbox_factory, default_universe)
    window = {"start": "2022-01-20T00:00:00Z", "end": "2022-06-15T00:00:00Z", "limit": 10_000}
    whole = daily_stamps(server, "META", asof="2022-06-14", **window)  # Facebook: FB's bars too, labelled META
    assert whole[0][:10] == "2022-01-20" and whole[-1][:10] == "2022-06-14"
    assert daily_stamps(server, "META", **window) == whole  # no asof: today, so Facebook again
    etf = daily_stamps(server, "META", asof="2022-01-01", **window)  # the ETF, which trades as METV since 01-31
    assert etf == daily_stamps(server, "METV", **window) == whole  # both trade every session of the window
    closes = {asof: sandbox_get(server, "/v2/stocks/bars", {"symbols": "META", "timeframe": "1Day", "asof": asof,
                                                             **window}).json()["bars"]["META"][0]["c"]
              for asof in ("2022-01-01", "2022-06-14")}
    assert closes["2022-01-01"] != closes["2022-06-14"]  # two companies, two histories
    fb = daily_stamps(server, "FB", **window)  # nobody holds FB today: the symbol alone, Facebook until its rename
    assert fb[-1][:10] == "2022-06-08"
    literal = daily_stamps(server, "META", asof="-", **window)  # "-" skips the mapping: whoever traded as META
    assert literal[-1][:10] == "2022-06-14" and "2022-01-28" in {s[:10] for s in literal}
    assert not {s[:10] for s in literal} & {"2022-02-01", "2022-06-08"}  # nobody traded as META in between
    actions = sandbox_get(server, "/v1/corporate-actions", {"start": "2022-01-01", "end": "2022-12-31",
                                                            "types": "name_change"}).json()["corporate_actions"]
    assert [(a["old_symbol"], a["new_symbol"], a["process_date"]) for a in actions["name_changes"]] == [
        ("META", "METV", "2022-01-31"), ("FB", "META", "2022-06-09")]
