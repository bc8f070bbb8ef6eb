"""ohlc_bars end to end: sandbox over HTTP -> dynalite -> read_bars, compared bar for bar with the sandbox."""

import random
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pandas as pd
import pytest
import requests

from signal9_pipeline.market_data import read_bars
from signal9_pipeline.market_data.assemble import COLUMNS
from signal9_pipeline.market_data.assets import (
    BARS_PARTITIONS,
    BarsConfig,
    daily_bars_schedule,
    ohlc_bars,
    settle_bars_schedule,
)
from signal9_pipeline.market_data.assets import universe as universe_of
from signal9_pipeline.market_data.fetch import request_groups
from signal9_pipeline.market_data.pages import bar_frames
from signal9_pipeline.market_data.read import UnknownSymbolsError, listed_on
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.tables.market_data import unpack_ids
from signal9_pipeline_tests.support import (
    asset_ids,
    check_results,
    materialize_bars,
    put_universe,
    run_sync,
    series_of,
    small_universe,
)

WATCHLIST = ["AAPL", "BRK.B", "F.PRB", "SPY", "BTC/USD", "ETH/BTC"]
CRYPTO = {"BTC/USD", "ETH/BTC"}


def served(symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
    """What the sandbox serves for the same range, fetched directly."""
    asset_class = "crypto" if symbol in CRYPTO else "us_equity"
    pages = list(bar_frames(AlpacaResource.from_settings(), [symbol], timeframe, start, end, asset_class=asset_class))
    frame = pd.concat(pages, ignore_index=True) if pages else pd.DataFrame(columns=["timestamp"])
    return frame.drop(columns="symbol", errors="ignore").reset_index(drop=True)


@pytest.fixture
def loaded(bars_env, default_universe):
    universe = small_universe(default_universe, n=40) + [a for a in default_universe if a["symbol"] in WATCHLIST]
    put_universe(bars_env, universe)
    assert run_sync().success
    watchlist = ",".join(WATCHLIST)
    for timeframe in ("1Min", "1Hour", "1Day"):
        for first, last in (("2024-03-07", "2024-03-12"), ("2024-11-27", "2024-12-02")):
            result = materialize_bars(timeframe, first, last, watchlist)
            assert result.success and all(check_results(result).values()), timeframe
    return bars_env


def test_read_bars_equals_what_the_sandbox_serves_across_day_edges_dst_and_early_closes(loaded):
    rng = random.Random(3)
    windows = [(datetime(2024, 3, 7), datetime(2024, 3, 13)), (datetime(2024, 11, 27), datetime(2024, 12, 3))]
    for _ in range(12):
        symbol, timeframe = rng.choice(WATCHLIST), rng.choice(["1Min", "1Hour", "1Day"])
        first, last = rng.choice(windows)
        start = first + timedelta(minutes=rng.randrange(0, 4 * 1440))
        end = min(last, start + timedelta(minutes=rng.randrange(60, 3 * 1440)))
        stored = read_bars(symbol, timeframe, start, end)
        expected = served(symbol, timeframe, start, end)
        assert len(stored) == len(expected), (symbol, timeframe, start, end)
        if len(expected):
            pd.testing.assert_frame_equal(stored, expected[stored.columns.tolist()], check_dtype=False)
    spy = read_bars("SPY", "1Min", datetime(2024, 11, 29), datetime(2024, 11, 30))
    regular = read_bars("SPY", "1Min", datetime(2024, 11, 29), datetime(2024, 11, 30), session="regular")
    extended = read_bars("SPY", "1Min", datetime(2024, 11, 29), datetime(2024, 11, 30), session="extended")
    assert pd.Timestamp("2024-11-29T14:30:00Z") <= regular["timestamp"].iloc[0] < pd.Timestamp("2024-11-29T15:00:00Z")
    assert pd.Timestamp("2024-11-29T17:30:00Z") < regular["timestamp"].iloc[-1] <= pd.Timestamp("2024-11-29T17:59:00Z")
    assert (spy["timestamp"].iloc[0] < regular["timestamp"].iloc[0] < regular["timestamp"].iloc[-1]
            < spy["timestamp"].iloc[-1])
    assert len(regular) + len(extended) == len(spy) and not set(regular["timestamp"]) & set(extended["timestamp"])
    with pytest.raises(ValueError, match="crypto"):
        read_bars("BTC/USD", "1Min", datetime(2024, 11, 29), datetime(2024, 11, 30), session="regular")
    assert read_bars("SPY", "1Day", datetime(2024, 11, 28), datetime(2024, 11, 28, 23)).empty  # Thanksgiving
    btc = read_bars("BTC/USD", "1Day", datetime(2024, 11, 30), datetime(2024, 12, 1, 23))
    assert len(btc) == 2  # crypto trades on the weekend


def one_by_one(symbols, timeframe, start, end, **kwargs) -> pd.DataFrame:
    frames = [read_bars(s, timeframe, start, end, **kwargs).assign(symbol=s) for s in symbols]
    return pd.concat([f for f in frames if len(f)], ignore_index=True)[["symbol", *COLUMNS]]


def test_a_many_symbol_read_is_the_one_symbol_reads_concatenated_and_names_every_unknown_symbol(loaded,
                                                                                                 default_universe):
    listed = [a["symbol"] for a in small_universe(default_universe, n=40) if a["class"] == "us_equity"][:40]
    equities = [s for s in WATCHLIST if s not in CRYPTO]
    cases = [(["SPY", "BTC/USD", "AAPL", "ETH/BTC", "BRK.B"], "1Min", datetime(2024, 3, 7), datetime(2024, 3, 12, 23),
              {}),
             (equities, "1Min", datetime(2024, 11, 27), datetime(2024, 12, 2, 23), {"session": "regular"}),
             (equities, "1Hour", datetime(2024, 11, 27), datetime(2024, 12, 2, 23), {"session": "extended"}),
             (WATCHLIST + listed, "1Day", datetime(2024, 3, 1), datetime(2024, 12, 31), {}),
             (list(reversed(WATCHLIST)), "1Hour", datetime(2024, 3, 8, 13, 30), datetime(2024, 3, 11, 2), {})]
    for symbols, timeframe, start, end, kwargs in cases:
        many = read_bars(symbols, timeframe, start, end, **kwargs)
        pd.testing.assert_frame_equal(many, one_by_one(symbols, timeframe, start, end, **kwargs),
                                      obj=f"{timeframe} {kwargs}")
        assert set(many["symbol"]) == {s for s in symbols if len(read_bars(s, timeframe, start, end, **kwargs))}
    with pytest.raises(UnknownSymbolsError, match=r"2 symbol\(s\) name no company.*NOPE1, NOPE2") as unknown:
        read_bars(["SPY", "NOPE1", "AAPL", "NOPE2"], "1Day", datetime(2024, 3, 1), datetime(2024, 3, 31))
    assert unknown.value.symbols == ["NOPE1", "NOPE2"]
    skipped = read_bars(["SPY", "NOPE1", "AAPL"], "1Day", datetime(2024, 3, 1), datetime(2024, 3, 31), missing="skip")
    assert skipped.attrs["missing_symbols"] == ["NOPE1"]
    pd.testing.assert_frame_equal(skipped,
                                  one_by_one(["SPY", "AAPL"], "1Day", datetime(2024, 3, 1), datetime(2024, 3, 31)))
    with pytest.raises(ValueError, match="crypto"):
        read_bars(["SPY", "BTC/USD"], "1Min", datetime(2024, 3, 7), datetime(2024, 3, 8), session="regular")
    # The universe of a date is the 1Day partition's, and reads as a cross-section.
    day = date(2024, 3, 8)
    cross_section = listed_on(day)
    dynamodb = DynamoDBResource.from_settings()
    assert {x.alpaca_id for x in cross_section} == universe_of("1Day", [day], BarsConfig(), dynamodb).by_day[day]
    crypto = listed_on(day, asset_class="crypto")
    assert "BTC/USD" in {x.symbol for x in crypto} and crypto == [x for x in cross_section if x.asset_class == "crypto"]
    bars = read_bars(cross_section, "1Day", datetime(2024, 3, 8), datetime(2024, 3, 8, 23))
    stored_day = table_manifest(loaded, "1Day", day)
    assert {asset_ids()[s] for s in bars["symbol"]} == stored_day  # every company with a bar that day, no other


def table_manifest(env, timeframe: str, day: date) -> set[str]:
    from signal9_pipeline.tables.market_data import MarketDataTable

    return MarketDataTable(DynamoDBResource.from_settings()).manifests(timeframe, [day.isoformat()]).get(
        day.isoformat(), set())


def test_one_item_per_symbol_day_and_a_shrunk_watchlist_deletes_nothing(loaded, default_universe):
    table = loaded["SIGNAL9_MARKET_DATA_TABLE"]
    items = list(DynamoDBResource.from_settings().scan(table, projection=["series", "day", "bar_count", "checksum",
                                                                          "feed", "asset_class"]))
    keys = [(i["series"], i["day"]) for i in items]
    assert len(keys) == len(set(keys))
    spy, btc = series_of("SPY", "1Min"), series_of("BTC/USD", "1Min")
    spy_days = sorted(i["day"] for i in items if i["series"] == spy)
    assert spy_days == ["2024-03-07", "2024-03-08", "2024-03-11", "2024-03-12", "2024-11-27", "2024-11-29",
                        "2024-12-02"]
    bars = {i["series"]: i for i in items if not i["series"].startswith("#PARTITION")}
    assert {(bars[spy]["feed"], bars[spy]["asset_class"])} == {("iex", "us_equity")}
    assert (bars[btc]["feed"], bars[btc]["asset_class"]) == ("us", "crypto")
    before = {k: i for k, i in zip(keys, items)}
    # The watchlist shrinks: the dropped symbols keep their history, the others are rewritten identically.
    result = materialize_bars("1Min", "2024-03-07", "2024-03-12", "SPY,BTC/USD")
    assert result.success
    after = {(i["series"], i["day"]): i
             for i in DynamoDBResource.from_settings().scan(table,
                                                            projection=["series", "day", "bar_count", "checksum"])}
    assert set(after) == set(before)
    assert all(after[k]["checksum"] == before[k]["checksum"] for k in before if not k[0].startswith("#PARTITION"))
    manifest = DynamoDBResource.from_settings().get_items(table,
                                                          [{"series": "#PARTITION#1Min", "day": "2024-03-07"}])[0]
    assert unpack_ids(manifest["asset_ids"]) == set(asset_ids(WATCHLIST).values())  # a manifest only gains companies


def test_daily_backfill_uses_full_pages_and_the_whole_listed_universe(loaded):
    result = materialize_bars("1Day", "2024-01-02", "2024-06-28")
    assert result.success
    metadata = result.asset_materializations_for_node("ohlc_bars")[0].metadata
    assert metadata["bars_written"].value >= 120 * 40
    assert metadata["bars_per_request"].value >= 2000 and metadata["requests_used"].value <= 6
    assert len(result.asset_materializations_for_node("ohlc_bars")) == 179  # every date of the range, one run
    # Each partition's own figures: a row per date, sessions and the days without one (crypto bars only) named.
    rows = {line.split(" | ")[0].strip("| "): line for line in metadata["by_date"].value.splitlines()[2:]}
    assert "no session (crypto only)" in rows["2024-01-06"] and "| session |" in rows["2024-01-02"]
    assert "no session" in rows["2024-01-15"]  # Martin Luther King Jr. Day
    # ... and, for any number of partitions, each partition's observation of its own figures.
    observed = {o.partition: o.metadata for o in result.asset_observations_for_node("ohlc_bars")}
    assert len(observed) == 179 and observed["2024-01-06|1Day"]["xnys_session"].value is False
    assert observed["2024-01-02|1Day"]["bars_written"].value > observed["2024-01-06|1Day"]["bars_written"].value > 0
    for name in ("bars_written", "bars_regular", "bars_held_back", "bars_zero_trade"):
        assert sum(o[name].value for o in observed.values()) == metadata[name].value, name


def test_an_impossible_bar_is_held_back_alone_and_a_rerun_after_alpaca_corrects_it_stores_it(loaded):
    table = loaded["SIGNAL9_MARKET_DATA_TABLE"]
    # 1Hour bars are stored a company-month per item
    key = [{"series": series_of("AAPL", "1Hour"), "day": "2024-03-01"}]
    before = DynamoDBResource.from_settings().get_items(table, key)[0]
    first_bar = read_bars("AAPL", "1Hour", datetime(2024, 3, 7), datetime(2024, 3, 8)).iloc[0]
    requests.post(f"{loaded['SIGNAL9_SANDBOX_URL']}/_sandbox/faults", json={"invalid_bar_symbols": ["AAPL"]},
                  timeout=10)
    result = materialize_bars("1Hour", "2024-03-07", "2024-03-07", ",".join(WATCHLIST))
    assert result.success  # an impossible bar costs a check, not the run or the rest of the day
    checks = check_results(result)
    assert checks["ohlc_consistent"] is False and checks["timestamps_valid"] is True
    metadata = result.asset_materializations_for_node("ohlc_bars")[0].metadata
    assert metadata["bars_held_back"].value == 1 and metadata["bars_kept_from_earlier"].value == 1
    assert f"AAPL {first_bar['timestamp'].isoformat()} l: price not positive" in metadata["held_back"].value
    after = DynamoDBResource.from_settings().get_items(table, key)[0]
    assert after["bar_count"] == before["bar_count"]  # the earlier sound bar was kept
    assert [(h["t"], h["field"]) for h in after["held_back"]] == [(first_bar["timestamp"].isoformat(), "l")]
    pd.testing.assert_series_equal(read_bars("AAPL", "1Hour", datetime(2024, 3, 7), datetime(2024, 3, 8)).iloc[0],
                                   first_bar)
    requests.post(f"{loaded['SIGNAL9_SANDBOX_URL']}/_sandbox/faults", json={}, timeout=10)
    rerun = materialize_bars("1Hour", "2024-03-07", "2024-03-07", ",".join(WATCHLIST))
    assert rerun.success and all(check_results(rerun).values())
    assert DynamoDBResource.from_settings().get_items(table, key)[0]["held_back"] == []


def test_partitions_schedule_and_backfill_policy():
    assert set(BARS_PARTITIONS.get_partition_keys(current_time=datetime(2024, 1, 4, 12, tzinfo=timezone.utc))) >= {
        "2024-01-02|1Day", "2024-01-03|1Min"}
    assert ohlc_bars.backfill_policy == dg.BackfillPolicy.single_run()
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 24, 5, 0, tzinfo=timezone.utc))
    requests_made = list(daily_bars_schedule(context))
    assert sorted(r.partition_key for r in requests_made) == sorted(
        f"2026-11-23|{tf}" for tf in ("1Min", "5Min", "15Min", "30Min", "1Hour", "1Day"))


def test_the_settle_pass_asks_for_the_dates_one_and_five_sessions_back_weekends_with_their_friday():
    def asked(moment):
        context = dg.build_schedule_context(scheduled_execution_time=moment)
        return sorted((r.partition_key, r.tags["signal9/settle_sessions"]) for r in settle_bars_schedule(context))

    monday = asked(datetime(2026, 11, 30, 12, 30, tzinfo=timezone.utc))  # after Thanksgiving (26th) and its half day
    dates = {(key.split("|")[0], k) for key, k in monday}
    assert dates == {("2026-11-27", "1"), ("2026-11-28", "1"), ("2026-11-29", "1"), ("2026-11-20", "5"),
                     ("2026-11-21", "5"), ("2026-11-22", "5")} and len(monday) == 6 * len(dates)
    assert asked(datetime(2026, 11, 26, 12, 30, tzinfo=timezone.utc)) == []  # no session: nothing to settle
    friday = {key.split("|")[0] for key, _ in asked(datetime(2026, 11, 27, 12, 30, tzinfo=timezone.utc))}
    assert friday == {"2026-11-25", "2026-11-26", "2026-11-19"}  # the holiday settles with the session before it


def test_request_groups_keep_pages_full():
    symbols = [f"S{i}" for i in range(12_000)]
    groups = request_groups(symbols, workers=4, cap=2000, expected_bars=12_000 * 60)
    assert len(groups) == 6 and sorted(s for g in groups for s in g) == sorted(symbols)
    assert len(request_groups(symbols[:62], workers=4, cap=2000, expected_bars=62)) == 1


def test_read_back_finds_changed_and_missing_buckets_but_not_later_merges(bars_env):
    from signal9_pipeline.market_data.buckets import stored_mismatches

    dynamodb = DynamoDBResource.from_settings()
    table = bars_env["SIGNAL9_MARKET_DATA_TABLE"]
    dynamodb.put_items(table, [{"series": f"S{i}#1Day", "day": "2024-01-01", "version": 2, "checksum": f"c{i}"}
                               for i in range(30)])
    written = {(f"S{i}#1Day", "2024-01-01"): (2, f"c{i}") for i in range(30)}
    assert stored_mismatches(dynamodb, written) == ([], 30)
    written[("S3#1Day", "2024-01-01")] = (2, "other")  # same version, other bars: not what was written
    written[("S4#1Day", "2024-01-01")] = (1, "older")  # superseded by a later run's merge: fine
    written[("GONE#1Day", "2024-01-01")] = (1, "c")
    mismatches, checked = stored_mismatches(dynamodb, written)
    assert sorted(mismatches) == ["GONE#1Day 2024-01-01", "S3#1Day 2024-01-01"] and checked == 31


def test_the_read_back_sample_is_bounded_and_uniform(monkeypatch):
    from signal9_pipeline.market_data import tally as market_assets

    monkeypatch.setattr(market_assets, "READBACK_SAMPLE", 100)
    tally = market_assets.RunTally()
    for i in range(10_000):
        tally.remember((f"S{i}", "d"), str(i))
    assert len(tally.written) == len(tally.sample_keys) == 100 and tally.items_seen == 10_000
    positions = sorted(int(k[0][1:]) for k in tally.written)
    assert positions[0] < 2_000 and positions[-1] > 8_000  # spread over the whole run, not only its end


def test_re_backfilling_a_past_date_after_delistings_keeps_every_stored_symbol_day(bars_env, default_universe):
    universe = small_universe(default_universe, n=30)
    put_universe(bars_env, universe)
    assert run_sync().success
    first = materialize_bars("1Day", "2024-03-07", "2024-03-08")
    assert first.success
    table = bars_env["SIGNAL9_MARKET_DATA_TABLE"]
    stored = {(i["series"], i["day"]): i["checksum"] for i in DynamoDBResource.from_settings().scan(table)
              if not i["series"].startswith("#PARTITION")}
    ids = asset_ids()
    delisted = [ids[s] for s in sorted(ids) if f"{ids[s]}#1Day" in {series for series, _ in stored}][:8]
    # Alpaca delists by status: the assets stay in its list as inactive, their history still served.
    put_universe(bars_env, [a | ({"status": "inactive", "tradable": False} if a["id"] in delisted else {})
                            for a in universe])
    assert run_sync(allow_mass_delisting=True).success
    again = materialize_bars("1Day", "2024-03-07", "2024-03-08")
    assert again.success and check_results(again)["stored_equals_fetched"]
    assert again.asset_materializations_for_node("ohlc_bars")[0].metadata["bars_written"].value == \
        first.asset_materializations_for_node("ohlc_bars")[0].metadata["bars_written"].value
    after = {(i["series"], i["day"]): i["checksum"] for i in DynamoDBResource.from_settings().scan(table)
             if not i["series"].startswith("#PARTITION")}
    assert after == stored  # the delisted symbols were listed on those dates: asked for again, nothing lost
    from signal9_pipeline.market_data.read import read_asset_bars

    for alpaca_id in delisted:
        assert len(read_asset_bars(alpaca_id, "1Day", datetime(2024, 3, 7), datetime(2024, 3, 9))) == 2
    # A date after the delisting no longer asks for them.
    from signal9_pipeline.market_data.assets import BarsConfig, universe

    tomorrow = date.today() + timedelta(days=1)
    later = universe("1Day", [tomorrow], BarsConfig(), DynamoDBResource.from_settings())
    assert later.by_day[tomorrow] and not set(delisted) & later.by_day[tomorrow]


def test_two_processes_writing_the_same_buckets_at_once_lose_no_bars(bars_env, default_universe):
    import json
    import subprocess
    import sys
    import time

    universe = small_universe(default_universe, n=150)
    put_universe(bars_env, universe)
    assert run_sync().success
    symbols = sorted(a["symbol"] for a in universe
                     if a["class"] == "us_equity" and a["status"] == "active" and a["tradable"])
    days = {"A": ["2024-03-04", "2024-03-06", "2024-03-08", "2024-03-12"],
            "B": ["2024-03-05", "2024-03-07", "2024-03-11", "2024-03-13"]}
    start = time.time() + 15  # both have imported and wait by then
    workers = [subprocess.Popen([sys.executable, "-m", "signal9_pipeline_tests.market_data.bucket_race_worker",
                                 str(start), ",".join(symbols), ",".join(d)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for d in days.values()]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err[-3000:] for _, err in outputs]
    tallies = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    every_day = sorted(days["A"] + days["B"])
    for symbol in symbols:  # each year bucket holds the bars of both processes' dates
        stored = read_bars(symbol, "1Day", datetime(2024, 3, 4), datetime(2024, 3, 14))
        expected = served(symbol, "1Day", datetime(2024, 3, 4), datetime(2024, 3, 14))
        assert len(stored) == len(expected), symbol
        if len(expected):
            pd.testing.assert_frame_equal(stored, expected[stored.columns.tolist()], check_dtype=False)
    items = [i for i in DynamoDBResource.from_settings().scan(bars_env["SIGNAL9_MARKET_DATA_TABLE"])
             if i["series"].endswith("#1Day")]
    assert {i["day"] for i in items} == {"2024-01-01"} and len(items) == len(symbols)  # one year bucket per symbol
    assert all(i["version"] == len(every_day) for i in items if i["bar_count"] == len(every_day))
    print(f"bucket race: {sum(t['write_conflicts'] for t in tallies)} conditional puts lost a race"
          " and were merged again")
    assert sum(t["write_conflicts"] for t in tallies) > 0  # the processes did collide on the same buckets


def test_the_day_that_just_ended_is_fetched_from_the_sip_feed_on_a_free_plan(bars_env, default_universe, monkeypatch):
    """Just after New York midnight the day that ended reaches into Alpaca's last 15 minutes, where a free plan
    refuses SIP data (403). The window ends 16 minutes ago instead, which loses no bar: equities stop at 20:00."""
    from signal9_pipeline.market_data.days import NEW_YORK
    from signal9_pipeline.market_data.ingest import IngestOptions, ingest
    from signal9_pipeline.market_data.tally import RunTally

    put_universe(bars_env, small_universe(default_universe, n=3))  # the stack's sandbox: the free plan
    assert run_sync().success
    from signal9_pipeline.market_data.universe import listed_universe

    listings = {i: x for i, x in listed_universe(DynamoDBResource.from_settings(), [date.today()]).listings.items()
                if x.asset_class == "us_equity"}
    monkeypatch.setenv("ALPACA_FEED", "sip")
    today = datetime.now(NEW_YORK).date()  # its window ends at the coming midnight: inside the last 15 minutes
    tally = RunTally()
    ingest(AlpacaResource.from_settings(), DynamoDBResource.from_settings(), "1Day", [today - timedelta(days=1), today],
           listings, IngestOptions(), tally)
    refused = [r for r in requests.get(f"{bars_env['SIGNAL9_SANDBOX_URL']}/_sandbox/stats",
                                       timeout=10).json()["requests"]
               if "/bars" in r["path"] and r["status"] == 403]
    assert refused == []
