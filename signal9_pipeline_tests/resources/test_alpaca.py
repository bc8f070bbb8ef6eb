"""AlpacaResource against real HTTP (the sandbox) and real Secrets Manager (moto): results, faults, typed errors."""

import json
import logging
import time
from datetime import datetime, timedelta, timezone

import boto3
import pandas as pd
import pytest
import requests

from signal9_pipeline.market_data.pages import BAR_COLUMNS, bar_frames, bars_page_frame
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.alpaca_clients import decode_json
from signal9_pipeline.resources.alpaca_errors import (
    AlpacaAuthError,
    AlpacaConfigError,
    AlpacaRequestError,
    AlpacaResponseError,
    AlpacaSubscriptionError,
    AlpacaUnavailableError,
    CredentialsError,
)
from signal9_pipeline_tests.conftest import TEST_KEY, TEST_SECRET

SYMBOLS = ["AAPL", "MSFT", "SPY", "BRK.B", "F.PRB", "GRAF.U", "FACTW", "BF.B", "GLD", "FLYX.WS"]


def set_faults(server, **faults):
    requests.post(f"{server.url}/_sandbox/faults", json=faults, timeout=10).raise_for_status()


def served(server, path_prefix=""):
    stats = requests.get(f"{server.url}/_sandbox/stats", timeout=10).json()["requests"]
    return [r for r in stats if r["path"].startswith(path_prefix)]


def all_bars(resource, symbols, timeframe, start, end) -> tuple[pd.DataFrame, int]:
    pages = list(bar_frames(resource, symbols, timeframe, start, end, asset_class="us_equity"))
    return pd.concat(pages, ignore_index=True), len(pages)


def test_list_assets_returns_every_asset_with_every_field(stack_env, default_universe):
    assert AlpacaResource.from_settings().list_assets() == default_universe
    assert {a["class"] for a in AlpacaResource.from_settings().list_assets(asset_class="crypto")} == {"crypto"}


def test_iter_bars_yields_one_frame_per_page_with_every_bar_once(sandbox, resource_for):
    resource = resource_for(sandbox, feed="sip")  # the dense feed, so the window spans several full pages
    frames = [*bar_frames(resource, SYMBOLS, "1Min", datetime(2024, 6, 3), datetime(2024, 6, 8),
                          asset_class="us_equity"),
              *bar_frames(resource, ["BTC/USD"], "1Min", datetime(2024, 6, 3), datetime(2024, 6, 8),
                          asset_class="crypto")]
    assert len(frames) >= 2 and all(list(f.columns) == BAR_COLUMNS for f in frames)
    assert all(len(f) <= 10_000 for f in frames)
    bars = pd.concat(frames, ignore_index=True)
    assert not bars.duplicated(["symbol", "timestamp"]).any()
    assert str(bars["timestamp"].dtype) == "datetime64[ns, UTC]"
    direct = requests.get(f"{sandbox.url}/v1beta3/crypto/us/bars", timeout=30,
                          headers={"APCA-API-KEY-ID": TEST_KEY, "APCA-API-SECRET-KEY": TEST_SECRET},
                          params={"symbols": "BTC/USD", "timeframe": "1Min", "start": "2024-06-03T00:00:00Z",
                                  "end": "2024-06-08T00:00:00Z", "limit": 10000}).json()
    btc = bars[bars.symbol == "BTC/USD"]
    expected = [b for b in direct["bars"]["BTC/USD"]]
    while direct["next_page_token"]:
        direct = requests.get(f"{sandbox.url}/v1beta3/crypto/us/bars", timeout=30,
                              headers={"APCA-API-KEY-ID": TEST_KEY, "APCA-API-SECRET-KEY": TEST_SECRET},
                              params={"symbols": "BTC/USD", "timeframe": "1Min", "start": "2024-06-03T00:00:00Z",
                                      "end": "2024-06-08T00:00:00Z", "limit": 10000,
                                      "page_token": direct["next_page_token"]}).json()
        expected += direct["bars"]["BTC/USD"]
    assert btc["close"].tolist() == [b["c"] for b in expected]
    assert max(len(f) for f in frames) == 10_000  # pages are requested with limit=10000


def test_calendar_and_credentials_check(sandbox, resource_for, secret_for):
    resource = resource_for(sandbox)
    days = resource.gateway().get("trading", "/calendar", {"start": "2024-11-25", "end": "2024-11-29"})
    assert [d["date"] for d in days] == ["2024-11-25", "2024-11-26", "2024-11-27", "2024-11-29"]
    assert resource.validate_credentials() is True
    assert resource_for(sandbox, credentials_secret_id=secret_for(TEST_KEY, "wrong")).validate_credentials() is False


def test_thirty_percent_faults_over_fifty_pages_return_what_a_clean_run_returns(sandbox_factory, resource_for,
                                                                                default_universe):
    server = sandbox_factory(list(default_universe), rate_limit_per_minute=100_000, seed=7)
    resource = resource_for(server, max_attempts=8, feed="sip")
    symbols = sorted(a["symbol"] for a in default_universe
                     if a["status"] == "active" and a["class"] == "us_equity")[:48]
    window = (datetime(2024, 4, 1), datetime(2024, 5, 15))
    clean, clean_pages = all_bars(resource, symbols, "1Min", *window)
    assert clean_pages >= 50
    set_faults(server, error_rate=0.3, error_statuses=[429, 500, 503])
    faulty, faulty_pages = all_bars(resource, symbols, "1Min", *window)
    pd.testing.assert_frame_equal(faulty, clean)
    assert faulty_pages == clean_pages
    statuses = [r["status"] for r in served(server, "/v2/stocks/bars")]
    assert {429, 500, 503} <= set(statuses) and statuses.count(200) == 2 * clean_pages


def test_hung_requests_time_out_and_paging_still_returns_every_bar_once(sandbox_factory, resource_for, default_universe,
                                                                       caplog):
    from signal9_pipeline.logs import fields_of

    server = sandbox_factory(list(default_universe), rate_limit_per_minute=100_000)
    resource = resource_for(server, request_timeout_s=1, max_attempts=4, feed="sip")
    clean, pages = all_bars(resource, SYMBOLS, "1Min", datetime(2024, 6, 3), datetime(2024, 6, 14))
    assert pages >= 3
    set_faults(server, hang_s=120, hang_every=3)  # a hang the 1 s read timeout must cut, not wait out
    caplog.set_level(logging.INFO, logger="signal9.alpaca")
    caplog.clear()
    hung, _ = all_bars(resource, SYMBOLS, "1Min", datetime(2024, 6, 3), datetime(2024, 6, 14))
    pd.testing.assert_frame_equal(hung, clean)
    statuses = [fields_of(r)["status"] for r in caplog.records if getattr(r, "event", None) == "alpaca_request"]
    assert statuses.count("timeout") >= 1 and statuses.count(200) == pages  # every hung request timed out, then retried
    requests.post(f"{server.url}/_sandbox/reset", timeout=10)


def test_wrong_keys_raise_auth_error_at_once_without_retry_storm(sandbox_factory, resource_for, secret_for):
    server = sandbox_factory([], rate_limit_per_minute=1000)
    with pytest.raises(AlpacaAuthError, match="401") as raised:
        resource_for(server, credentials_secret_id=secret_for(TEST_KEY, "not-the-secret")).list_assets()
    assert "not-the-secret" not in str(raised.value)
    assert len(served(server)) == 1


def test_the_feed_is_sent_on_every_stock_request_and_recent_sip_on_a_free_plan_is_a_typed_error(sandbox_factory,
                                                                                                resource_for):
    server = sandbox_factory(None, rate_limit_per_minute=100_000)  # the free plan, as Alpaca's default
    end = datetime.now(timezone.utc)
    start = end - timedelta(hours=2)
    with pytest.raises(AlpacaSubscriptionError) as raised:
        list(resource_for(server, feed="sip").iter_bars(["AAPL"], "1Min", start, end, asset_class="us_equity"))
    message = str(raised.value)
    assert "'sip'" in message and "ALPACA_FEED=delayed_sip or iex" in message and "rotate" not in message
    assert len(served(server, "/v2/stocks/bars")) == 1  # permanent: not retried
    for feed in ("delayed_sip", "iex"):
        list(resource_for(server, feed=feed).iter_bars(["AAPL"], "1Min", start, end, asset_class="us_equity"))
    with pytest.raises(AlpacaConfigError, match="boats"):
        next(resource_for(server, feed="boats").iter_bars(["AAPL"], "1Min", start, end, asset_class="us_equity"))


def test_a_rotated_secret_is_picked_up_without_a_restart(sandbox_factory, resource_for, secret_for):
    server = sandbox_factory([], rate_limit_per_minute=1000)
    secret_id = secret_for(TEST_KEY, "old-secret")
    resource = resource_for(server, credentials_secret_id=secret_id, credentials_ttl_s=3600)
    assert resource.validate_credentials() is False
    boto3.client("secretsmanager").put_secret_value(
        SecretId=secret_id, SecretString=f'{{"apiKey": "{TEST_KEY}", "secretKey": "{TEST_SECRET}", "paper": true}}')
    assert resource.list_assets() == []  # the 403 made it re-read the rotated secret, despite the long TTL


def test_other_client_errors_are_not_retried(sandbox_factory, resource_for):
    server = sandbox_factory([], rate_limit_per_minute=1000)
    set_faults(server, error_rate=1.0, error_statuses=[422])
    with pytest.raises(AlpacaRequestError, match="422"):
        resource_for(server, max_attempts=5).list_assets()
    assert len(served(server)) == 1


def test_malformed_json_raises_response_error_naming_the_endpoint(sandbox_factory, resource_for):
    server = sandbox_factory([], rate_limit_per_minute=1000)
    set_faults(server, malformed_rate=1.0)
    with pytest.raises(AlpacaResponseError, match="/v2/assets"):
        resource_for(server, max_attempts=2).list_assets()
    assert len(served(server)) == 2


def test_persistent_outage_raises_unavailable_then_the_breaker_fails_fast(sandbox_factory, resource_for):
    server = sandbox_factory([], rate_limit_per_minute=1000)
    set_faults(server, error_rate=1.0, error_statuses=[503])
    resource = resource_for(server, max_attempts=2, circuit_failure_threshold=3, circuit_reset_s=60)
    with pytest.raises(AlpacaUnavailableError, match="503"):
        resource.list_assets()
    assert len(served(server)) == 2
    with pytest.raises(AlpacaUnavailableError):
        resource.list_assets()  # third failure opens the circuit
    before = len(served(server))
    with pytest.raises(AlpacaUnavailableError, match="circuit breaker open"):
        resource.list_assets()
    assert len(served(server)) == before


def test_unreachable_alpaca_is_unavailable(resource_for, sandbox_factory):
    server = sandbox_factory([], rate_limit_per_minute=1000)
    url = server.url
    server.shutdown()
    server.server_close()
    resource = AlpacaResource.from_settings(trading_url=url, data_url=url,
                                            credentials_secret_id=resource_for(server).credentials_secret_id,
                                            rate_limit_per_minute=1000,
                                            rate_limiter_url=resource_for(server).rate_limiter_url, max_attempts=2)
    with pytest.raises(AlpacaUnavailableError, match="cannot reach"):
        resource.list_assets()


@pytest.mark.parametrize("secret_string,problem", [
    ("not json", "is not JSON"),
    ('{"apiKey": "AKSECRETVALUE1"}', "lacks"),
    ('["AKSECRETVALUE1"]', "lacks"),
])
def test_a_malformed_secret_raises_credentials_error_without_its_value(stack_env, secret_string, problem):
    secret_id = f"signal9/test-{abs(hash(secret_string))}"
    boto3.client("secretsmanager").create_secret(Name=secret_id, SecretString=secret_string)
    with pytest.raises(CredentialsError, match=problem) as raised:
        AlpacaResource.from_settings(credentials_secret_id=secret_id).list_assets()
    assert secret_id in str(raised.value) and "AKSECRETVALUE1" not in str(raised.value)


def test_a_missing_secret_raises_credentials_error_before_any_alpaca_call(stack_env):
    with pytest.raises(CredentialsError, match="signal9/missing"):
        AlpacaResource.from_settings(credentials_secret_id="signal9/missing").list_assets()
    assert requests.get(f"{stack_env['SIGNAL9_SANDBOX_URL']}/_sandbox/stats", timeout=10).json()["requests"] == []


def test_secrets_manager_unreachable_raises_credentials_error(stack_env, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(CredentialsError, match="unreachable"):
        AlpacaResource.from_settings().list_assets()


def test_no_credential_appears_in_any_log_line_or_error(sandbox_factory, resource_for, secret_for, caplog, capfd):
    import io

    from signal9_pipeline.logs import json_handler

    server = sandbox_factory(None, rate_limit_per_minute=100_000)
    caplog.set_level(logging.DEBUG)
    json_lines = io.StringIO()
    handler = json_handler()
    handler.setStream(json_lines)  # the JSON lines production writes (SIGNAL9_LOG_FORMAT=json), scanned too
    logging.getLogger("signal9").addHandler(handler)
    resource = resource_for(server, max_attempts=2)
    resource.list_assets()
    list(resource.iter_bars(["AAPL"], "1Hour", datetime(2024, 6, 3), datetime(2024, 6, 8), asset_class="us_equity"))
    list(resource.iter_bars(["BTC/USD"], "1Hour", datetime(2024, 6, 3), datetime(2024, 6, 8), asset_class="crypto"))
    set_faults(server, error_rate=0.5, error_statuses=[500, 429], malformed_rate=0.3)
    errors = []
    for _ in range(5):
        try:
            resource.list_assets(asset_class="crypto")
        except Exception as exc:  # any failure text is scanned too
            errors.append(repr(exc) + str(exc))
    with pytest.raises(AlpacaAuthError) as refused:
        resource_for(server, credentials_secret_id=secret_for(TEST_KEY, "S3CR3T-WRONG-VALUE")).list_assets()
    logging.getLogger("signal9").removeHandler(handler)
    captured = capfd.readouterr()
    text = "\n".join([caplog.text, json_lines.getvalue(), captured.out, captured.err, str(refused.value), *errors])
    assert "Alpaca GET /v2/assets: 200" in caplog.text and '"event": "alpaca_request"' in json_lines.getvalue()
    for secret in (TEST_KEY, TEST_SECRET, "S3CR3T-WRONG-VALUE"):
        assert secret not in text


def test_every_api_call_logs_a_sentence_with_its_facts_as_fields(sandbox, resource_for, caplog, capsys):
    import json

    from signal9_pipeline.logs import fields_of, json_handler

    caplog.set_level(logging.INFO, logger="signal9.alpaca")
    resource_for(sandbox).gateway().get("trading", "/calendar", {"start": "2024-01-02", "end": "2024-01-05"})
    records = [r for r in caplog.records if r.name == "signal9.alpaca"]
    entries = [fields_of(r) for r in records]
    assert [e["path"] for e in entries] == ["/v2/calendar"]
    assert {"event", "method", "path", "status", "latency_ms", "attempt", "remaining"} <= entries[0].keys()
    assert entries[0]["status"] == 200 and isinstance(entries[0]["remaining"], int)
    assert records[0].getMessage().startswith("Alpaca GET /v2/calendar: 200 in ")  # what a person reads
    line = json.loads(json_handler().format(records[0]))  # what CloudWatch Logs Insights filters on
    assert line["event"] == "alpaca_request" and line["path"] == "/v2/calendar" and line["status"] == 200
    assert line["level"] == "INFO" and line["logger"] == "signal9.alpaca" and line["message"] == records[0].getMessage()


@pytest.mark.parametrize("page", [[], {"bars": [1, 2]}, {"nope": 1}, {"bars": {"AAPL": 5}},
                                  {"bars": {}, "next_page_token": 3}])
def test_bars_page_not_in_alpacas_envelope_is_a_response_error(page):
    with pytest.raises(AlpacaResponseError, match="/stocks/bars"):
        bars_page_frame(page, "/stocks/bars")


def test_bars_missing_or_mistyping_a_field_carry_their_fault_and_the_page_its_other_bars():
    sound = {"t": "2024-01-02T14:31:00Z", "o": 1, "h": 1, "l": 1, "c": 1, "v": 1}
    page = {"bars": {"AAPL": [{"t": "2024-01-02T14:30:00Z", "o": 1}, {**sound, "t": "not a time"}, sound]},
            "next_page_token": None}
    frame, _ = bars_page_frame(page, "/stocks/bars")
    assert frame["fault"].tolist() == ["h: missing", "t: 'not a time' is not an RFC 3339 time", None]
    assert frame["timestamp"].isna().tolist() == [False, True, False]
    assert frame.iloc[2][["open", "high", "low", "close", "volume"]].tolist() == [1.0] * 5  # the sound bar as it came


def test_bars_page_stamps_and_bodies_read_as_alpaca_spells_them():
    """RFC 3339 stamps with Z, an offset or fractions (Arrow's parser), a stamp without a zone (pandas' fallback,
    read as UTC), and a body with NaN (orjson refuses it, the standard library reads it): the same times and numbers."""
    bar = {"o": 1, "h": 2.5, "l": 0.5, "c": 2, "v": 300, "n": 4, "vw": 1.5}
    page = decode_json(json.dumps({"bars": {"AAPL": [{**bar, "t": "2024-01-02T14:30:00Z"},
                                                     {**bar, "t": "2024-01-02T09:31:00-05:00"},
                                                     {**bar, "t": "2024-01-02T14:32:00.5Z", "vw": float("nan")}]},
                                   "next_page_token": None}).encode())
    frame, _ = bars_page_frame(page, "/stocks/bars")
    assert [t.isoformat() for t in frame["timestamp"]] == ["2024-01-02T14:30:00+00:00", "2024-01-02T14:31:00+00:00",
                                                          "2024-01-02T14:32:00.500000+00:00"]
    assert (frame["open"].dtype == "float64" and frame["trade_count"].dtype == "int64"
            and frame["vwap"].isna().tolist() == [False, False, True])
    naive, _ = bars_page_frame({"bars": {"AAPL": [{**bar, "t": "2024-01-02T14:30:00"}]}}, "/stocks/bars")
    assert naive["timestamp"].iloc[0].isoformat() == "2024-01-02T14:30:00+00:00"
    with pytest.raises(ValueError):
        decode_json(b'{"bars": ')


def test_empty_bars_page_is_an_empty_frame():
    frame, token = bars_page_frame({"bars": None, "next_page_token": None}, "/stocks/bars")
    assert frame.empty and list(frame.columns) == BAR_COLUMNS and token is None


def test_unknown_timeframe_is_refused_before_any_request(stack_env):
    with pytest.raises(ValueError, match="2Day"):
        next(bar_frames(AlpacaResource.from_settings(), ["AAPL"], "2Day", datetime(2024, 1, 2), datetime(2024, 1, 3),
                        asset_class="us_equity"))


def test_a_spent_server_quota_pauses_requests_until_its_reset(sandbox, resource_for):
    gateway = resource_for(sandbox).gateway()
    spent = requests.Response()
    spent.status_code = 200
    spent.headers.update({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(time.time() + 1.5)})
    assert gateway.note_quota(spent) == 0
    started = time.monotonic()
    gateway.wait_for_server_quota()
    assert time.monotonic() - started >= 1.0
    started = time.monotonic()
    gateway.wait_for_server_quota()  # the reset has passed: no more waiting
    assert time.monotonic() - started < 1.0


def test_paper_or_live_host_follows_alpaca_paper_when_no_url_is_set(monkeypatch, stack_env):
    monkeypatch.delenv("ALPACA_TRADING_URL")
    monkeypatch.setenv("ALPACA_PAPER", "false")
    assert "paper" not in AlpacaResource.from_settings().gateway().client("trading")._base_url
    monkeypatch.setenv("ALPACA_PAPER", "true")
    assert "paper-api" in AlpacaResource.from_settings().gateway().client("trading")._base_url
    assert "paper" not in AlpacaResource.from_settings(paper=False).gateway().client("trading")._base_url
