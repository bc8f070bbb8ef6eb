"""Hostile Alpaca answers against the pipeline's two gates: the asset validator and the bar checks.

Alpaca's answers are the pipeline's only untrusted input, and their symbols become DynamoDB keys. A
corpus of hostile assets and bars (`hostile_corpus`) and hypothesis-generated ones are thrown at the
gates, as pure functions and end to end over HTTP into dynalite. What must hold: the validator never
raises; every bad row is quarantined with a reason naming its field, except that a hostile name never
costs an asset (it is stored normalised and safe, with a warning); no hostile value reaches a key;
no unsound or mistyped bar is stored, and the sound ones still are.
"""

from __future__ import annotations

import collections
import copy
import json
import math
import random
import re
import threading
import unicodedata
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signal9_pipeline.alerting.sensor import error_type
from signal9_pipeline.assets_sync.changes import Observation, plan_sync
from signal9_pipeline.assets_sync.validation import validate_assets
from signal9_pipeline.market_data.buckets import BucketWriter
from signal9_pipeline.market_data.ingest import PageStore
from signal9_pipeline.market_data.pages import bars_page_frame
from signal9_pipeline.market_data.tally import RunTally
from signal9_pipeline.resources.alpaca_errors import AlpacaResponseError
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.tables.assets import AssetsTable
from signal9_pipeline_tests.reliability.hostile_corpus import (
    ALLOWED_SYMBOL,
    CONFUSABLES,
    CONTROL,
    HUGE_NUMBERS,
    INJECTION,
    MISTYPED_BARS,
    NON_FINITE,
    NUL,
    PATHS,
    UNSOUND_BARS,
    WARNED_BARS,
    WRONG_TYPES,
    HostileBar,
    accepted_as_data,
    hostile_assets,
    hostile_names,
    template,
)
from signal9_pipeline_tests.support import (
    check_results,
    materialize_bars,
    put_universe,
    run_sync,
    small_universe,
)

MAX_REASON_CHARS = 512
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DAY, TIMEFRAME = "2024-06-03", "1Day"
BUCKET = "2024-01-01"  # 1Day bars are stored a symbol-year per item
DAILY_STAMP = "2024-06-03T04:00:00Z"  # midnight New York
# The ledger fixture only appends to the session's list, so sharing it across examples is sound.
PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                          HealthCheck.function_scoped_fixture])


def names_field(reason: str, field: str) -> bool:
    """The reason's first problem is about `field` (reasons start with the field, duplicates with
    'duplicate <field>')."""
    return reason.startswith((f"{field} ", f"duplicate {field} "))


def key_safe(symbol: object) -> bool:
    return isinstance(symbol, str) and ALLOWED_SYMBOL.fullmatch(symbol) is not None


def safe_stored_name(name: object) -> bool:
    """Stored as the validator promises: at most 256 characters, none of them control, format or a lone
    surrogate (isprintable), NFC, single spaces, trimmed."""
    return (isinstance(name, str) and len(name) <= 256 and name.isprintable() and unicodedata.is_normalized("NFC", name)
            and name == " ".join(name.split()))


def planned_keys(valid_rows: list[dict]) -> list[str]:
    """The assets-table keys the sync would write for these validated rows, on an empty table."""
    plan = plan_sync(valid_rows, [], {}, Observation("2024-06-03T04:00:00Z", "2024-06-03"))
    return [item["asset_id"] for item, _ in plan.companies] + [view["asset_id"] for view in plan.views]


def safe_key(key: str) -> bool:
    """`ASSET#<safe symbol>` or `ID#<canonical UUID>`: nothing a hostile row sent can shape a key otherwise."""
    if key.startswith("ID#"):
        return CANONICAL_UUID.fullmatch(key[3:]) is not None
    return key == f"ASSET#{key[6:]}" and key_safe(key[6:])


# --- the asset validator, pure ---------------------------------------------------------------------
def test_every_hostile_asset_is_quarantined_with_a_reason_naming_its_field(ledger):
    corpus, data, sound = hostile_assets(), accepted_as_data(), [template("AAPL"), template("BRK.B"), template("F.PRB")]
    raw = [case.row for case in corpus] + data + sound
    result = validate_assets(raw)
    reasons = {q.row: q.reason for q in result.quarantined}
    assert sorted(result.valid.symbol) == sorted(r["symbol"] for r in data + sound)
    misjudged = [(case.category, case.field, reasons.get(row)) for row, case in enumerate(corpus)
                 if not names_field(reasons.get(row, ""), case.field)]
    assert misjudged == []
    assert max(len(q.reason) for q in result.quarantined) <= MAX_REASON_CHARS  # a 1 MB value is not echoed whole
    assert all(len(q.symbol or "") <= 64 and len(q.alpaca_id or "") <= 64 for q in result.quarantined)
    stored_names = dict(zip(result.valid.symbol, result.valid.name))
    assert all(stored_names[r["symbol"]] == r["name"] for r in data)  # injection text in a name is data, kept verbatim
    assert all(safe_key(key) for key in planned_keys(result.valid.to_dict("records")))
    for category, count in collections.Counter(case.category for case in corpus).items():
        ledger.record("hostile input", f"asset rows with {category} (validator)",
                      "quarantined with a reason naming the field; sound rows kept", lost=0, times=count)


def test_every_hostile_name_is_kept_stored_normalised_with_a_warning(ledger):
    corpus, sound = hostile_names(), [template("AAPL"), template("BRK.B")]
    result = validate_assets([case.row for case in corpus] + sound)
    assert result.quarantined == []  # a name never costs an asset
    stored = dict(zip(result.valid.symbol, result.valid.name))
    assert sorted(stored) == sorted(row["symbol"] for row in [case.row for case in corpus] + sound)
    assert [case.category for case in corpus if not safe_stored_name(stored[case.row["symbol"]])] == []
    assert stored[corpus[0].row["symbol"]] == "Foobar Inc. Common Stock"  # the soft hyphen of a real listing removed
    assert all(stored[r["symbol"]] == r["name"] for r in sound)
    assert all(kind.startswith("name:") for kind in result.warnings)
    assert sum(result.warnings.values()) >= len(corpus)  # every hostile name is counted, the sound ones are not
    for category, count in collections.Counter(case.category for case in corpus).items():
        ledger.record("hostile input", f"asset rows with {category} in the name (validator)",
                      "kept, the name stored normalised and safe, counted as a name:* warning", lost=0, times=count)


HOSTILE_VALUES = st.sampled_from(
    [*INJECTION, *PATHS, *CONFUSABLES, *CONTROL, *NUL, *HUGE_NUMBERS, *NON_FINITE, *WRONG_TYPES, None, "", " ",
     "A" * 300]
)
JSON_VALUES = st.recursive(
    HOSTILE_VALUES | st.text() | st.floats() | st.integers() | st.booleans() | st.none(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
FIELDS = st.sampled_from(["id", "symbol", "name", "exchange", "class", "status", "tradable", "marginable",
                          "min_order_size", "price_increment", "attributes"])
MISSING = object()


def spoiled_row(symbol: str, field: str, value: object) -> dict:
    row = template(symbol)
    if value is MISSING:
        row.pop(field, None)
    else:
        row[field] = value
    return row


SPOILS = st.tuples(FIELDS, JSON_VALUES | st.just(MISSING)).filter(
    lambda spoil: not (isinstance(spoil[1], str) and spoil[1].startswith(("HZQP", "MSFT"))))  # twins of sound rows


@settings(PROPERTY, max_examples=20)
@given(spoils=st.lists(SPOILS, min_size=1, max_size=8))
def test_hostile_fields_never_raise_and_never_reach_a_key(spoils, ledger):
    raw = [spoiled_row(f"HZQP{n}", field, value) for n, (field, value) in enumerate(spoils)] + [template("MSFT")]
    result = validate_assets(raw)
    assert len(result.valid) + len(result.quarantined) == len(raw)
    assert "MSFT" in set(result.valid.symbol)  # hostile rows never cost a sound one
    for q in result.quarantined:
        assert names_field(q.reason, spoils[q.row][0]) and len(q.reason) <= MAX_REASON_CHARS
    for key in planned_keys(result.valid.to_dict("records")):
        assert safe_key(key) and len(key.encode("utf-8")) <= 2048
    ledger.record("hostile input", "generated asset rows with one hostile or random field each (validator)",
                  "quarantined naming the field, or accepted with a key-safe symbol; the sound row kept",
                  times=len(spoils))


def hostile_units() -> list[list[object]]:
    """The corpus's rows as units that are hostile on their own: a duplicate is hostile only with its twin."""
    units: dict[object, list[object]] = collections.defaultdict(list)
    for n, case in enumerate(hostile_assets()):
        units[case.category if case.category.startswith("duplicate") else n].append(case.row)
    return list(units.values())


@settings(PROPERTY, max_examples=10)
@given(picks=st.lists(st.integers(0, 10_000), max_size=40), order=st.randoms(use_true_random=False))
def test_hostile_rows_mixed_into_a_universe_never_cost_a_sound_row(picks, order, ledger):
    units = hostile_units()
    chosen = [row for i in dict.fromkeys(i % len(units) for i in picks) for row in units[i]]
    sound = [template(symbol) for symbol in ("AAPL", "BRK.B", "F.PRB", "FLYX.WS", "GRAF.U")]
    sound.append(template("BTC/USD", **{"class": "crypto", "exchange": "CRYPTO"}))
    raw = copy.deepcopy(chosen + sound)
    order.shuffle(raw)
    result = validate_assets(raw)
    assert sorted(result.valid.symbol) == sorted(r["symbol"] for r in sound)
    assert len(result.quarantined) == len(chosen)
    assert all(safe_key(key) for key in planned_keys(result.valid.to_dict("records")))
    ledger.record("hostile input", "corpus rows shuffled into a sound universe (validator)",
                  "every hostile row quarantined, every sound row kept", times=len(chosen))


# --- the asset sync end to end ----------------------------------------------------------------------
def put_raw_universe(env: dict[str, str], universe: list) -> None:
    """Like `support.put_universe`, but NaN and Infinity go over the wire as Python's JSON writes them."""
    body = json.dumps(universe)
    response = requests.put(f"{env['SIGNAL9_SANDBOX_URL']}/_sandbox/universe", data=body, timeout=60,
                            headers={"Content-Type": "application/json"})
    response.raise_for_status()


def run_sync_tolerating(quarantine_fraction: float, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    from signal9_pipeline.definitions import defs

    config = {"ops": {"validated_assets": {"config": {"max_quarantine_fraction": quarantine_fraction}}}}
    return defs.resolve_job_def("asset_sync_job").execute_in_process(run_config=config, instance=instance,
                                                                     raise_on_error=False)


def test_a_hostile_universe_synced_into_dynalite_leaves_only_safe_keys(sync_env, default_universe, ledger):
    sound = small_universe(default_universe, n=40)
    corpus = [case for case in hostile_assets() if case.field != "row"]  # the sandbox serves objects only
    named = [case.row for case in hostile_names()]
    universe = sound + [case.row for case in corpus] + accepted_as_data() + named
    random.Random(7).shuffle(universe)
    put_raw_universe(sync_env, universe)
    table = sync_env["SIGNAL9_ASSETS_TABLE"]
    with dg.instance_for_test() as instance:
        blocked = run_sync(instance=instance)
        assert check_results(blocked)["quarantine_rate"] is False
        assert list(DynamoDBResource.from_settings().scan(table)) == []  # the blocking check stopped the write

        result = run_sync_tolerating(0.9, instance)
    assert result.success
    quarantined = result.asset_materializations_for_node("validated_assets")[0].metadata["quarantined"].value
    assert quarantined == len(corpus) + len(validate_assets(sound).quarantined)
    assert all(safe_key(i["asset_id"]) for i in DynamoDBResource.from_settings().scan(table)
               if i["asset_id"] != "SYNC#observed")
    items = list(AssetsTable(DynamoDBResource.from_settings()).views())
    assert all(key_safe(i["symbol"]) for i in items)
    listed = {a["symbol"] for a in sound if a["status"] == "active" and a["tradable"]}
    assert {i["symbol"] for i in items} == listed | {r["symbol"] for r in accepted_as_data() + named}
    names = {i["symbol"]: i["name"] for i in items}
    assert all(names[r["symbol"]] == r["name"] for r in accepted_as_data())
    assert all(safe_stored_name(names[r["symbol"]]) for r in named)
    ledger.record("hostile input",
                  f"{len(corpus)} hostile asset rows mixed into a {len(sound)}-row universe (end to end)",
                  "default run blocked by quarantine_rate, nothing written; "
                  "tolerant run wrote every listed sound asset, only ASSET#<safe symbol> and ID#<UUID> keys",
                  lost=0, times=len(corpus))


# --- bars, pure ----------------------------------------------------------------------------------
class CollectingTable:
    """A market-data table that holds nothing yet and collects the buckets put into it, instead of DynamoDB."""

    def __init__(self) -> None:
        self.items: list[dict] = []

    def market_data_table_name(self) -> str:
        return "collected"

    def get_items(self, table: str, keys: list[dict], projection: list[str] | None = None) -> list[dict]:
        return []

    def put_if(self, table: str, item: dict, condition: str, names: dict, values: dict | None = None) -> bool:
        self.items.append(item)
        return True


def daily_bar(price: float = 100.0) -> dict:
    return {"t": DAILY_STAMP, "o": price, "h": price + 2, "l": price - 2, "c": price + 1, "v": 12_345, "n": 321,
            "vw": price + 0.5}


def stored_series(page: dict, symbols: list[str]) -> tuple[set[str], RunTally]:
    frame, _ = bars_page_frame(page, "/v2/stocks/bars", requested=symbols)
    tally, table = RunTally(), CollectingTable()
    describe = {"timeframe": TIMEFRAME, "asset_class": "us_equity", "adjustment": "raw", "feed": "iex",
                "ingested_at": "2024-06-04T05:00:00+00:00"}
    writer = BucketWriter(table, tally, describe, crypto=False, threads=1)
    try:
        # each symbol its own id
        PageStore(TIMEFRAME, "us_equity", {DAY}, tally, writer)(frame, {s: s for s in symbols})
    finally:
        writer.close()
    return {item["series"] for item in table.items}, tally


@pytest.mark.parametrize("bar", UNSOUND_BARS, ids=lambda b: f"{b.field}={b.value!r}")
def test_an_unsound_bar_is_held_back_naming_symbol_time_and_field(bar: HostileBar, ledger):
    page = {"bars": {"AAPL": [daily_bar() | {bar.field: bar.value}], "MSFT": [daily_bar(400.0)]},
            "next_page_token": None}
    stored, tally = stored_series(page, ["AAPL", "MSFT"])
    assert stored == {"MSFT#1Day"}
    assert [(p.symbol, p.timestamp) for p in tally.problems] == [("AAPL", "2024-06-03T04:00:00+00:00")]
    ledger.record("hostile input", f"bar with {bar.category} ({bar.field}={bar.value!r}) (pure)",
                  "bar held back with a named problem; the sound symbol stored", lost=0)


@pytest.mark.parametrize("bar", WARNED_BARS, ids=lambda b: f"{b.field}={b.value!r}")
def test_a_vwap_outside_the_range_is_stored_and_counted(bar: HostileBar, ledger):
    page = {"bars": {"AAPL": [daily_bar() | {bar.field: bar.value}]}, "next_page_token": None}
    stored, tally = stored_series(page, ["AAPL"])
    assert stored == {"AAPL#1Day"} and tally.problems == [] and tally.vwap_outside_range == 1
    ledger.record("hostile input", f"bar with {bar.category} ({bar.field}={bar.value!r}) (pure)",
                  "stored and counted as a warning", lost=0)


@pytest.mark.parametrize("bar", MISTYPED_BARS, ids=lambda b: f"{b.field}={str(b.value)[:12]!r}")
def test_a_mistyped_bar_is_held_back_naming_its_field_and_the_page_stored(bar: HostileBar, ledger):
    sound_same_day = daily_bar(50.0) | {"t": "2024-06-03T04:00:00Z"}
    page = {"bars": {"AAPL": [daily_bar() | {bar.field: bar.value}], "MSFT": [daily_bar(400.0)],
                     "NVDA": [sound_same_day]}, "next_page_token": None}
    stored, tally = stored_series(page, ["AAPL", "MSFT", "NVDA"])
    assert stored == {"MSFT#1Day", "NVDA#1Day"}
    [problem] = tally.problems
    assert (problem.symbol, problem.field) == ("AAPL", bar.field)
    # the time names the bar when it could be read; a bar without a readable time belongs to no day
    assert problem.timestamp == ("(no time)" if bar.field == "t" else "2024-06-03T04:00:00+00:00")
    assert tally.totals()["held_back"] == 1 and tally.bars == 2
    ledger.record("hostile input", f"bar with {bar.category} ({bar.field}={str(bar.value)[:20]!r}) (pure)",
                  "bar held back naming its field; the page's other bars stored", lost=0)


def test_a_bar_that_is_not_an_object_or_lacks_a_field_is_held_back(ledger):
    page = {"bars": {"AAPL": [None, {k: v for k, v in daily_bar().items() if k != "o"},
                              daily_bar() | {"t": "2024-06-04T04:00:00Z"}]},
            "next_page_token": None}
    frame, _ = bars_page_frame(page, "/v2/stocks/bars", requested=["AAPL"])
    assert frame["fault"].tolist()[:2] == ["bar: a JSON null, not an object", "o: missing"]
    stored, tally = stored_series(page, ["AAPL"])
    assert stored == set()  # the only sound bar is of 2024-06-04, not the partition's day
    assert [(p.field, p.reason) for p in tally.problems] == [("bar", "a JSON null, not an object"), ("o", "missing")]
    assert tally.outside_window == 1
    ledger.record("hostile input", "bars that are null or lack a price (pure)", "each held back naming its fault",
                  lost=0)


@pytest.mark.parametrize("bars", [{"AAPL": {"t": DAILY_STAMP}}, {"AAPL": "bars"}])
def test_bars_of_a_symbol_that_are_not_a_list_refuse_the_page(bars, ledger):
    with pytest.raises(AlpacaResponseError, match="expected a list"):
        bars_page_frame({"bars": bars, "next_page_token": None}, "/v2/stocks/bars", requested=["AAPL"])
    ledger.record("hostile input", "bars page whose symbol holds no list (pure)",
                  "page refused with AlpacaResponseError: not Alpaca's envelope", lost=0)


@pytest.mark.parametrize("symbol", ["EVIL#1Day", "../AAPL", "AAPL#PARTITION", "\u0410APL", "aapl"])
def test_bars_of_a_symbol_not_asked_for_are_refused(symbol: str, ledger):
    page = {"bars": {"AAPL": [daily_bar()], symbol: [daily_bar()]}, "next_page_token": None}
    with pytest.raises(AlpacaResponseError, match="not asked for"):
        stored_series(page, ["AAPL", "MSFT"])
    ledger.record("hostile input", f"bars page with bars of a symbol not asked for ({symbol!r}) (pure)",
                  "page refused with AlpacaResponseError before the symbol could become a key", lost=0)


PRICES = st.floats() | st.integers(-1_000, 1_000_000)
BAR_FIELDS = ("o", "h", "l", "c", "v", "vw")


@st.composite
def bars_maybe_spoiled(draw) -> dict:
    """A sound daily bar, or one with any of its numbers replaced by any float or int (NaN, inf, huge, negative)."""
    low, o, c, h = sorted(draw(st.lists(st.floats(0.01, 1e6), min_size=4, max_size=4)))
    bar = {"t": DAILY_STAMP, "o": o, "h": h, "l": low, "c": c, "v": draw(st.floats(0, 1e9)), "n": 1,
           "vw": (low + h) / 2}
    for field in draw(st.sets(st.sampled_from(BAR_FIELDS))):
        bar[field] = draw(PRICES | st.none()) if field == "vw" else draw(PRICES)
    return bar


def is_sound(bar: dict) -> bool:
    o, h, low, c, v, vw = (bar[k] for k in BAR_FIELDS)
    finite = all(abs(x) < float("inf") for x in (o, h, low, c, v))  # False for NaN too
    missing_vwap = vw is None or math.isnan(vw)  # null or NaN: Alpaca left it out
    return (finite and min(o, h, low, c) > 0 and h >= max(o, c) and low <= min(o, c) and v >= 0
            and (missing_vwap or v == 0 or 0 <= vw < float("inf")))  # without trades any vwap is sound


@settings(PROPERTY, max_examples=40)
@given(bars=st.lists(bars_maybe_spoiled(), min_size=1, max_size=8))
def test_a_bar_is_stored_exactly_when_it_is_sound(bars, ledger):
    symbols = [f"S{n}" for n in range(len(bars))]
    stored, _ = stored_series({"bars": {s: [bar] for s, bar in zip(symbols, bars)}}, symbols)
    assert stored == {f"{s}#1Day" for s, bar in zip(symbols, bars) if is_sound(bar)}
    ledger.record("hostile input", "generated daily bars with NaN, inf, huge, zero or negative numbers (bar checks)",
                  "stored exactly when sound", lost=0, times=len(bars))


# --- bars end to end, through a spoiling proxy ------------------------------------------------------
Spoil = Callable[[str, dict], None]


class SpoilingProxy(ThreadingHTTPServer):
    """Alpaca's data API as a man in the middle serves it: the sandbox's bars pages, spoiled on the way."""

    daemon_threads = True

    def __init__(self, upstream: str):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream
        self.spoil: Spoil = lambda path, page: None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SpoilingProxy

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        headers = {k: v for k, v in self.headers.items() if k.startswith("APCA-")}
        answer = requests.get(self.server.upstream + self.path, headers=headers, timeout=60)
        body = answer.content
        if answer.status_code == 200 and self.path.split("?")[0].endswith("/bars"):
            page = answer.json()
            self.server.spoil(self.path, page)
            body = json.dumps(page).encode()  # NaN and Infinity as Python writes them
        self.send_response(answer.status_code)
        for name, value in answer.headers.items():
            if name.lower().startswith("x-ratelimit"):
                self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def spoiling_proxy(bars_env, monkeypatch) -> Iterator[SpoilingProxy]:
    proxy = SpoilingProxy(bars_env["ALPACA_DATA_URL"])
    threading.Thread(target=proxy.serve_forever, name="spoiling-proxy", daemon=True).start()
    monkeypatch.setenv("ALPACA_DATA_URL", proxy.url)
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def market_data_items(env: dict[str, str]) -> dict[tuple[str, str], dict]:
    return {(i["series"], i["day"]): i for i in DynamoDBResource.from_settings().scan(env["SIGNAL9_MARKET_DATA_TABLE"])}


def spoil_symbols(changes: dict[str, tuple[str, object]]) -> Spoil:
    def spoil(path: str, page: dict) -> None:
        for symbol, (field, value) in changes.items():
            for bar in page["bars"].get(symbol, []):
                bar[field] = value
    return spoil


def step_failure(result: dg.ExecuteInProcessResult):
    return next(e for e in result.all_events if e.is_step_failure).event_specific_data


def held_back_symbols(result: dg.ExecuteInProcessResult) -> set[str]:
    """The symbols a bars run names in its list of held-back bars (`SYMBOL TIMESTAMP FIELD: reason` lines)."""
    problems = result.asset_materializations_for_node("ohlc_bars")[0].metadata["held_back"].value
    return {line.split(" ", 1)[0] for line in problems.splitlines()}


def test_hostile_bars_served_over_http_are_refused_before_dynalite(spoiling_proxy, bars_env, default_universe, ledger):
    put_universe(bars_env, small_universe(default_universe, n=14)[:18])
    assert run_sync().success
    companies = {i["symbol"]: i["alpaca_id"] for i in AssetsTable(DynamoDBResource.from_settings()).companies()
                 if i["asset_class"] == "us_equity"}
    equities = sorted(companies)
    unsound = dict(zip(equities, UNSOUND_BARS))
    spoiling_proxy.spoil = spoil_symbols({s: (bar.field, bar.value) for s, bar in unsound.items()})
    first = materialize_bars(TIMEFRAME, DAY, DAY)
    assert first.success and check_results(first)["ohlc_consistent"] is False
    stored = market_data_items(bars_env)
    assert all(series == f"#PARTITION#{TIMEFRAME}"
               or (series.endswith(f"#{TIMEFRAME}") and CANONICAL_UUID.fullmatch(series[:-5]))
               for series, _ in stored)  # keys are the companies' ids, whatever the bars held
    assert {s for s in equities if (f"{companies[s]}#1Day", BUCKET) in stored} == set(equities) - set(unsound)
    assert held_back_symbols(first) == set(unsound)  # the run names every held-back bar's symbol, and only those
    ledger.record("hostile input", "bars with NaN, inf, negative, zero, high<low, huge values over HTTP (end to end)",
                  "each spoiled bar held back and named, every sound one stored", lost=0, times=len(unsound))

    victim = min(set(equities) - set(unsound))
    spoiled_field = {"price as a string": "c", "bool as a price": "o"}.get
    mistyped = {"price as a string": (spoil_symbols({victim: ("c", "101.5")}), "ohlc_consistent"),
                "timestamp null": (spoil_symbols({victim: ("t", None)}), "timestamps_valid"),
                "bool as a price": (spoil_symbols({victim: ("o", True)}), "ohlc_consistent")}
    for fault, (spoil, check) in mistyped.items():
        spoiling_proxy.spoil = spoil
        held = materialize_bars(TIMEFRAME, DAY, DAY)
        assert held.success and check_results(held)[check] is False, fault
        assert held_back_symbols(held) >= {victim}, fault
        key = (f"{companies[victim]}#1Day", BUCKET)
        item, before = market_data_items(bars_env)[key], stored[key]
        assert (item["bars"], item["checksum"]) == (before["bars"], before["checksum"]), fault  # the stored bar kept
        if check == "ohlc_consistent":  # a bar with a readable time is recorded on its bucket as held back
            assert [h["field"] for h in item["held_back"]] == [spoiled_field(fault)], fault
        ledger.record("hostile input", f"bars page with {fault} over HTTP (end to end)",
                      "the bar held back and named, the check fails, the stored bar kept", lost=0)

    spoiling_proxy.spoil = lambda path, page: page["bars"].update(
        {"EVIL#1Day": page["bars"][victim]} if victim in page["bars"] else {})
    refused = materialize_bars(TIMEFRAME, DAY, DAY)
    assert not refused.success and error_type(step_failure(refused).error) == "AlpacaResponseError"
    ledger.record("hostile input", "bars page with unrequested symbol over HTTP (end to end)",
                  "run fails with AlpacaResponseError before the symbol becomes a key", lost=0)
