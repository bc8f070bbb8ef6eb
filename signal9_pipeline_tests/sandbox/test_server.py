"""The sandbox over real HTTP, driven by alpaca-py's own clients where they apply."""

import json
import subprocess
import sys
import time
from datetime import date, datetime, timezone

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.historical import CryptoHistoricalDataClient, StockHistoricalDataClient
from alpaca.data.requests import CryptoBarsRequest, StockBarsRequest
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import AssetClass, AssetStatus
from alpaca.trading.requests import GetAssetsRequest, GetCalendarRequest

from signal9_pipeline.sandbox.bars import BarGenerator
from signal9_pipeline_tests.conftest import TEST_KEY, TEST_SECRET, auth_headers


@pytest.fixture(autouse=True)
def clean(sandbox):
    requests.post(f"{sandbox.url}/_sandbox/reset", timeout=10)


def trading(sandbox, secret=TEST_SECRET, raw=True) -> TradingClient:
    return TradingClient(TEST_KEY, secret, paper=True, raw_data=raw, url_override=sandbox.url)


def get(sandbox, path, **params):
    return requests.get(f"{sandbox.url}{path}", params=params, headers=auth_headers(), timeout=30)


def follow_pages(sandbox, path, **params) -> tuple[dict, int]:
    """Every bar of a query, following next_page_token; also how many pages it took."""
    bars: dict[str, list] = {}
    pages, token = 0, None
    while True:
        page = get(sandbox, path, **params, **({"page_token": token} if token else {})).json()
        pages += 1
        for symbol, rows in page["bars"].items():
            bars.setdefault(symbol, []).extend(rows)
        token = page["next_page_token"]
        if token is None:
            return bars, pages


# --- assets, account, calendar -------------------------------------------------------------------
def test_trading_client_lists_every_asset_with_every_field(sandbox, default_universe):
    assets = trading(sandbox).get_all_assets()
    assert assets == default_universe


def test_asset_filters_match_the_live_api(sandbox, default_universe):
    client = trading(sandbox)
    active = client.get_all_assets(GetAssetsRequest(status=AssetStatus.ACTIVE))
    assert len(active) == sum(a["status"] == "active" for a in default_universe)
    crypto = client.get_all_assets(GetAssetsRequest(asset_class=AssetClass.CRYPTO))
    assert crypto and all(a["class"] == "crypto" for a in crypto)
    nyse = get(sandbox, "/v2/assets", exchange="NYSE", status="active").json()
    assert nyse and all(a["exchange"] == "NYSE" and a["status"] == "active" for a in nyse)
    options = get(sandbox, "/v2/assets", attributes="has_options,ipo").json()
    assert options and all({"has_options", "ipo"} & set(a["attributes"]) for a in options)


def test_typed_models_parse_the_sandboxs_answers(sandbox):
    client = trading(sandbox, raw=False)
    assert client.get_asset("BRK.B").symbol == "BRK.B"
    assert client.get_account().account_number
    days = client.get_calendar(GetCalendarRequest(start=date(2024, 11, 25), end=date(2024, 12, 2)))
    assert [d.date for d in days] == [date(2024, 11, 25), date(2024, 11, 26), date(2024, 11, 27), date(2024, 11, 29), date(2024, 12, 2)]
    assert days[3].close.hour == 13  # the day after Thanksgiving closes early


def test_asset_by_symbol_id_and_crypto_spelling(sandbox, default_universe):
    client = trading(sandbox)
    brk = next(a for a in default_universe if a["symbol"] == "BRK.B")
    assert client.get_asset("BRK.B") == brk
    assert client.get_asset(brk["id"]) == brk
    assert client.get_asset("BTCUSD")["symbol"] == "BTC/USD"
    missing = get(sandbox, "/v2/assets/NOPE123")
    assert missing.status_code == 404 and set(missing.json()) == {"code", "message"}


# --- bars ----------------------------------------------------------------------------------------
def test_limit_counts_bars_across_all_symbols_and_tokens_resume_exactly(sandbox):
    query = {"symbols": "MSFT,AAPL,BRK.B", "timeframe": "1Min", "start": "2024-06-03T00:00:00Z", "end": "2024-06-04T23:59:00Z"}
    first = get(sandbox, "/v2/stocks/bars", **query, limit=500).json()
    assert sum(len(v) for v in first["bars"].values()) == 500 and first["next_page_token"]
    assert list(first["bars"]) == ["AAPL"]  # ordered by symbol
    paged, pages = follow_pages(sandbox, "/v2/stocks/bars", **query, limit=500)
    whole = get(sandbox, "/v2/stocks/bars", **query, limit=10000).json()
    assert whole["next_page_token"] is None and paged == whole["bars"]
    assert pages == -(-sum(len(v) for v in whole["bars"].values()) // 500)
    assert list(paged) == ["AAPL", "BRK.B", "MSFT"]
    for rows in paged.values():
        stamps = [r["t"] for r in rows]
        assert stamps == sorted(set(stamps))


def test_stock_client_reads_multi_page_bars_equal_to_the_generator(sandbox):
    client = StockHistoricalDataClient(TEST_KEY, TEST_SECRET, url_override=sandbox.url)
    symbols = ["AAPL", "MSFT", "SPY", "BRK.B", "F.PRB", "GRAF.U", "FACTW", "BF.B", "GLD", "FLYX.WS", "FERAR", "FATBP"]
    request = StockBarsRequest(symbol_or_symbols=symbols, timeframe=TimeFrame(5, TimeFrameUnit.Minute),
                               start=datetime(2024, 3, 1), end=datetime(2024, 3, 31))
    bars = client.get_stock_bars(request).data
    pages = [r for r in requests.get(f"{sandbox.url}/_sandbox/stats", timeout=10).json()["requests"] if r["path"] == "/v2/stocks/bars"]
    assert len(pages) >= 2  # more than one 10,000-bar page
    start = int(datetime(2024, 3, 1, tzinfo=timezone.utc).timestamp() // 60)
    end = int(datetime(2024, 3, 31, tzinfo=timezone.utc).timestamp() // 60)
    for symbol in symbols:
        expected = [c for chunk in BarGenerator(symbol, crypto=False).bars("5Min", start, end) for c in chunk.c.tolist()]
        assert [b.close for b in bars.get(symbol, [])] == expected, symbol


def test_crypto_bars_via_crypto_client_and_unknown_symbols_are_omitted(sandbox):
    client = CryptoHistoricalDataClient(TEST_KEY, TEST_SECRET, url_override=sandbox.url)
    request = CryptoBarsRequest(symbol_or_symbols=["BTC/USD", "ETH/BTC", "NOPE/USD"], timeframe=TimeFrame.Hour,
                                start=datetime(2024, 12, 1), end=datetime(2024, 12, 1, 23, 59))
    bars = client.get_crypto_bars(request).data
    assert set(bars) <= {"BTC/USD", "ETH/BTC"} and len(bars.get("BTC/USD", [])) > 0
    stock_answer = get(sandbox, "/v2/stocks/bars", symbols="AAPL,ZZZZZZ9", timeframe="1Day", start="2024-06-03", end="2024-06-07").json()
    assert list(stock_answer["bars"]) == ["AAPL"]


def test_sort_desc_pages_newest_first(sandbox):
    query = {"symbols": "AAPL", "timeframe": "1Hour", "start": "2024-06-03", "end": "2024-06-08", "sort": "desc"}
    paged, pages = follow_pages(sandbox, "/v2/stocks/bars", **query, limit=7)
    ascending, _ = follow_pages(sandbox, "/v2/stocks/bars", **{**query, "sort": "asc"}, limit=10000)
    assert pages > 1 and paged["AAPL"] == list(reversed(ascending["AAPL"]))


@pytest.mark.parametrize("params,needle", [
    ({"symbols": "AAPL", "timeframe": "7Min"}, "timeframe"),
    ({"symbols": "AAPL", "timeframe": "1Min", "limit": "0"}, "limit"),
    ({"symbols": "AAPL", "timeframe": "1Min", "limit": "10001"}, "limit"),
    ({"symbols": "AAPL", "timeframe": "1Min", "limit": "ten"}, "limit"),
    ({"symbols": "AAPL", "timeframe": "1Min", "start": "yesterday"}, "start"),
    ({"symbols": "AAPL", "timeframe": "1Min", "start": "2024-06-05", "end": "2024-06-04"}, "before start"),
    ({"symbols": "AAPL", "timeframe": "1Min", "page_token": "garbage!!"}, "page_token"),
    ({"timeframe": "1Min"}, "symbols"),
    ({"symbols": "AAPL", "timeframe": "1Min", "adjustment": "weird"}, "adjustment"),
])
def test_malformed_bar_queries_answer_422_in_alpacas_shape(sandbox, params, needle):
    answer = get(sandbox, "/v2/stocks/bars", **params)
    assert answer.status_code == 422
    body = answer.json()
    assert set(body) == {"code", "message"} and needle in body["message"] and "Traceback" not in answer.text


def test_malformed_asset_query_answers_422(sandbox):
    answer = get(sandbox, "/v2/assets", status="dead")
    assert answer.status_code == 422 and "status" in answer.json()["message"]


# --- auth, rate limit, faults --------------------------------------------------------------------
def test_auth_failures_answer_401_or_403(sandbox):
    bare = requests.get(f"{sandbox.url}/v2/account", timeout=10)
    assert bare.status_code == 401 and set(bare.json()) == {"code", "message"}
    wrong_key = requests.get(f"{sandbox.url}/v2/account", headers={"APCA-API-KEY-ID": "x", "APCA-API-SECRET-KEY": "y"}, timeout=10)
    assert wrong_key.status_code == 401
    with pytest.raises(APIError) as refused:
        trading(sandbox, secret="not-the-secret").get_account()
    assert refused.value.status_code == 403


def test_rate_limit_is_a_sliding_window_per_key_with_headers(sandbox_factory):
    server = sandbox_factory([], rate_limit_per_minute=5)
    answers = [requests.get(f"{server.url}/v2/account", headers=auth_headers(), timeout=10) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers[:5]] == ["4", "3", "2", "1", "0"]
    assert all(a.headers["X-RateLimit-Limit"] == "5" for a in answers)
    reset = int(answers[-1].headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 62
    assert answers[-1].json()["code"] == 42910000


def test_error_faults_only_on_chosen_paths(sandbox):
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"error_rate": 1.0, "error_statuses": [503], "paths": ["/v2/stocks"]}, timeout=10)
    assert get(sandbox, "/v2/stocks/bars", symbols="AAPL", timeframe="1Day").status_code == 503
    assert get(sandbox, "/v2/account").status_code == 200


def test_error_rate_injects_the_configured_statuses(sandbox):
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"error_rate": 0.5, "error_statuses": [429, 500]}, timeout=10)
    statuses = [get(sandbox, "/v2/account").status_code for _ in range(60)]
    assert set(statuses) == {200, 429, 500}
    assert 15 <= statuses.count(200) <= 45


def test_hang_every_nth_request_until_reset(sandbox):
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"hang_s": 60, "hang_every": 2}, timeout=10)
    outcomes = []
    for _ in range(4):
        try:
            outcomes.append(requests.get(f"{sandbox.url}/v2/account", headers=auth_headers(), timeout=1).status_code)
        except requests.Timeout:
            outcomes.append("timeout")
    assert outcomes == [200, "timeout", 200, "timeout"]


def test_malformed_json_fault(sandbox):
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"malformed_rate": 1.0}, timeout=10)
    answer = get(sandbox, "/v2/assets", asset_class="crypto")
    assert answer.status_code == 200
    with pytest.raises(ValueError):
        answer.json()


def test_invalid_fault_config_is_refused(sandbox):
    for body in ({"error_rate": 2}, {"error_statuses": [200]}, {"unknown": 1}, [1, 2]):
        answer = requests.post(f"{sandbox.url}/_sandbox/faults", json=body, timeout=10)
        assert answer.status_code == 422, body


def test_stats_record_api_requests_and_reset_clears_them(sandbox):
    get(sandbox, "/v2/account")
    get(sandbox, "/v2/assets/NOPE123")
    stats = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=10).json()["requests"]
    assert [(r["method"], r["path"], r["status"]) for r in stats] == [("GET", "/v2/account", 200), ("GET", "/v2/assets/NOPE123", 404)]
    assert all(abs(r["t"] - time.time()) < 60 for r in stats)
    requests.post(f"{sandbox.url}/_sandbox/reset", timeout=10)
    assert requests.get(f"{sandbox.url}/_sandbox/stats", timeout=10).json()["requests"] == []


def test_put_universe_replaces_what_is_served(sandbox_factory, default_universe):
    server = sandbox_factory(list(default_universe[:10]), rate_limit_per_minute=1000)
    listing = dict(default_universe[0], symbol="NEWCO", id="11111111-2222-4333-8444-555555555555", **{"class": "us_equity"})
    assert requests.put(f"{server.url}/_sandbox/universe", json=[listing], timeout=10).status_code == 200
    served = requests.get(f"{server.url}/v2/assets", headers=auth_headers(), timeout=10).json()
    assert served == [listing]
    bars = requests.get(f"{server.url}/v2/stocks/bars", headers=auth_headers(), timeout=10,
                        params={"symbols": "NEWCO", "timeframe": "1Day", "start": "2024-06-03", "end": "2024-06-08"}).json()
    assert len(bars["bars"]["NEWCO"]) == 5
    assert requests.put(f"{server.url}/_sandbox/universe", data="{not json", timeout=10).status_code == 422
    assert requests.put(f"{server.url}/_sandbox/universe", json={"symbol": "X"}, timeout=10).status_code == 422


# --- command line --------------------------------------------------------------------------------
def test_cli_serves_until_terminated(tmp_path):
    universe = tmp_path / "universe.json"
    universe.write_text(json.dumps([{"id": "1", "class": "us_equity", "symbol": "AAA", "status": "active"}]))
    proc = subprocess.Popen([sys.executable, "-m", "signal9_pipeline.sandbox", "--port", "0", "--universe", str(universe),
                             "--api-key", "k", "--secret-key", "s"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.split()[-1]
        assert requests.get(f"{url}/v2/assets", headers={"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"}, timeout=10).json()[0]["symbol"] == "AAA"
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0


@pytest.mark.parametrize("content,reason", [(None, "cannot read"), ("{oops", "not valid JSON"), ('{"a": 1}', "JSON array")])
def test_cli_names_an_unusable_universe_file(tmp_path, content, reason):
    path = tmp_path / "universe.json"
    if content is not None:
        path.write_text(content)
    done = subprocess.run([sys.executable, "-m", "signal9_pipeline.sandbox", "--universe", str(path), "--api-key", "k",
                           "--secret-key", "s"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and str(path) in done.stderr and reason in done.stderr
