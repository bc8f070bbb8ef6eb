"""Alpaca revises the past: a day fetched at 05:00 UTC, settled again by the real schedules at their tick times,
every change kept in the ledger, any earlier read reproduced bar for bar.

The sandbox answers as of its clock with late reports on (signal9_devstack/sandbox/bars.py: the recorded +0.06% ..
+1.6% of a day's volume arriving after it, a few extended-hours minute bars appearing only the next day, prices
unchanged). Each schedule is evaluated with `build_schedule_context` at its tick, with the sandbox clock set to that
moment, and the runs it asks for are executed.
"""

from __future__ import annotations

import collections
import time
from datetime import date, datetime, timezone

import dagster as dg
import pandas as pd
import pytest
import requests

from signal9_devstack.sandbox.bars import BarGenerator
from signal9_pipeline.corporate_actions.actions import parse_action, to_item
from signal9_pipeline.market_data import read_bars
from signal9_pipeline.market_data.assets import daily_bars_schedule, settle_bars_schedule
from signal9_pipeline.market_data.ledger import CHANGE_NAMES, LedgerError, decode_changes
from signal9_pipeline.market_data.pages import bar_frames
from signal9_pipeline.market_data.read import resolve_symbol
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.tables.market_data import LEDGER_PREFIX, MarketDataTable
from signal9_pipeline_tests.support import EventTap, check_results, put_universe, run_sync, small_universe

DAY = date(2024, 6, 3)  # a Monday; its first session after is 06-04, its fifth 06-10
FETCH, SETTLE_1, SETTLE_5 = (datetime(2024, 6, 4, 5, tzinfo=timezone.utc),
                             datetime(2024, 6, 4, 12, 30, tzinfo=timezone.utc),
                             datetime(2024, 6, 10, 12, 30, tzinfo=timezone.utc))
FIXED = ["AAPL", "MSFT", "SPY", "GLD"]
TIMEFRAMES = ("1Day", "1Min")
START, END = datetime(2024, 6, 3), datetime(2024, 6, 4, 3, 59)


def sandbox(env, path: str, body) -> None:
    requests.put(f"{env['SIGNAL9_SANDBOX_URL']}/_sandbox/{path}", json=body, timeout=10).raise_for_status()


def served(symbols: list[str], timeframe: str) -> dict[str, pd.DataFrame]:
    """What the sandbox answers now (as of its clock), per symbol, as read_bars frames."""
    pages = list(bar_frames(AlpacaResource.from_settings(), symbols, timeframe, START, END, asset_class="us_equity"))
    frame = pd.concat(pages, ignore_index=True)
    return {s: frame.loc[frame["symbol"] == s].drop(columns="symbol").reset_index(drop=True) for s in symbols}


def stored(symbols: list[str], timeframe: str, **kwargs) -> dict[str, pd.DataFrame]:
    return {s: read_bars(s, timeframe, START, END, **kwargs) for s in symbols}


def assert_same(actual: dict[str, pd.DataFrame], expected: dict[str, pd.DataFrame], what: str) -> None:
    for symbol, frame in expected.items():
        if frame.empty and actual[symbol].empty:
            continue
        pd.testing.assert_frame_equal(actual[symbol], frame[actual[symbol].columns.tolist()], check_dtype=False,
                                      obj=f"{what} {symbol}")


def tick(schedule, moment: datetime, instance: dg.DagsterInstance, env,
         watchlist: list[str]) -> tuple[dict[str, dg.ExecuteInProcessResult], datetime]:
    """Evaluate the schedule at `moment` with the sandbox answering as of then; run its requests for DAY. Returns the
    runs by timeframe and a moment after them and before any later run (ledger moments are to the second)."""
    from signal9_pipeline.definitions import defs

    sandbox(env, "clock", {"now": moment.isoformat()})
    asked = list(schedule(dg.build_schedule_context(instance=instance, scheduled_execution_time=moment)))
    ours = [r for r in asked if r.partition_key.split("|")[0] == DAY.isoformat()]
    assert (sorted(r.partition_key.split("|")[1] for r in ours)
            == sorted(("1Min", "5Min", "15Min", "30Min", "1Hour", "1Day")))
    job, config = (defs.resolve_job_def("daily_bars_job"),
                   {"ops": {"ohlc_bars": {"config": {"intraday_watchlist": ",".join(watchlist)}}}})
    results = {r.partition_key.split("|")[1]: job.execute_in_process(
        partition_key=r.partition_key, run_config=config, instance=instance,
        tags={**r.tags, "dagster/run_key": r.run_key}, raise_on_error=False)
               for r in ours if r.partition_key.split("|")[1] in TIMEFRAMES}
    assert all(r.success for r in results.values())
    after = datetime.now(timezone.utc)
    time.sleep(1.1)
    return results, after


def ledger(env) -> list[dict]:
    return [i for i in DynamoDBResource.from_settings().scan(env["SIGNAL9_MARKET_DATA_TABLE"])
            if i["series"].startswith(LEDGER_PREFIX)]


def restated_series(events: list[dict]) -> list[tuple[str, str]]:
    return [(s["series"], s["ledgerEntry"]) for e in events for s in e["detail"]["series"]]


def late_only(universe: list[dict], count: int) -> list[str]:
    """Listed stocks with a minute of DAY whose trades were all reported late, in the feed the pipeline asks for (the
    sandbox's model picks them)."""
    first, last = (int(START.replace(tzinfo=timezone.utc).timestamp()) // 60,
                   int(END.replace(tzinfo=timezone.utc).timestamp()) // 60)
    found, named = [], collections.Counter(a["symbol"] for a in universe)
    for asset in universe:
        if (asset["class"] == "us_equity" and asset["status"] == "active" and asset["tradable"]
                and named[asset["symbol"]] == 1):
            generator, feed = BarGenerator(asset["symbol"], crypto=False), AlpacaResource.from_settings().data_feed()
            reported = sum(len(b) for b in generator.bars("1Min", first, last, feed=feed,
                                                          reported_by=int(FETCH.timestamp()) // 60))
            if reported < sum(len(b) for b in generator.bars("1Min", first, last, feed=feed)):
                found.append(asset["symbol"])
                if len(found) == count:
                    return found
    raise AssertionError("no stock of the universe has a minute reported only late")


@pytest.fixture
def revising(bars_env, default_universe):
    watchlist = FIXED + late_only(default_universe, 2)
    universe = list({a["id"]: a for a in small_universe(default_universe, n=8)
                     + [a for a in default_universe if a["symbol"] in watchlist]}.values())
    put_universe(bars_env, universe)
    assert run_sync().success
    sandbox(bars_env, "settings", {"revisions": "late_reports"})
    yield bars_env, watchlist, sorted(set(watchlist) | {a["symbol"] for a in universe[:8]})
    requests.post(f"{bars_env['SIGNAL9_SANDBOX_URL']}/_sandbox/reset", timeout=10)


def test_a_day_fetched_then_settled_twice_keeps_every_revision_and_reproduces_every_earlier_read(revising):
    env, watchlist, daily_symbols = revising
    symbols = {"1Day": daily_symbols, "1Min": watchlist}
    instance, tap = dg.DagsterInstance.ephemeral(), EventTap(env["SIGNAL9_EVENT_BUS"], f"restated-{time.time_ns()}",
                                                            ["marketDataRestated"])
    answers, moments, events, checks = {}, {}, {}, {}
    for name, schedule, moment in (("fetch", daily_bars_schedule, FETCH), ("settle 1", settle_bars_schedule, SETTLE_1),
                                   ("settle 5", settle_bars_schedule, SETTLE_5)):
        results, moments[name] = tick(schedule, moment, instance, env, watchlist)
        answers[name] = {tf: served(symbols[tf], tf) for tf in TIMEFRAMES}
        events[name] = tap.drain()
        checks[name] = {tf: check_results(r)["restatements_within_tolerance"] for tf, r in results.items()}
        for tf in TIMEFRAMES:  # the table holds Alpaca's answer of that moment
            assert_same(stored(symbols[tf], tf), answers[name][tf], f"{name} {tf}")
    sandbox(env, "clock", {"now": None})
    sandbox(env, "settings", {"revisions": "final"})
    for tf in TIMEFRAMES:  # the last settle stored the final answer
        assert_same(stored(symbols[tf], tf), served(symbols[tf], tf), f"final {tf}")
    sandbox(env, "settings", {"revisions": "late_reports"})

    # Each revision is in the ledger, old -> new, and nothing else is.
    entries = ledger(env)
    assert events["fetch"] == [] and {len(events["settle 1"]), len(events["settle 5"])} == {len(TIMEFRAMES)}
    announced = restated_series(events["settle 1"] + events["settle 5"])
    assert sorted(announced) == sorted({(f"{e['alpaca_id']}#{e['timeframe']}", e["day"]) for e in entries})  # once each
    first_settle = moments["settle 1"].strftime("%Y-%m-%dT%H:%M:%SZ")
    beyond = {}
    for tf in TIMEFRAMES:
        beyond[tf] = False
        for symbol in symbols[tf]:
            before, after = answers["fetch"][tf][symbol], answers["settle 1"][tf][symbol]
            found = [e for e in entries
                     if e["symbol"] == symbol and e["timeframe"] == tf and e["seen_at"] <= first_settle]
            changes = decode_changes(bytes(found[0]["changes"]), found[0]["checksum"]) if found else pd.DataFrame(
                {"timestamp": [], "change": []})
            assert len(found) <= 1, (symbol, tf)
            merged = before.merge(after, on="timestamp", how="outer", suffixes=("_old", "_new"), indicator=True)
            differs = merged.loc[(merged["_merge"] != "both") | (merged["volume_old"] != merged["volume_new"])
                                 | (merged["trade_count_old"] != merged["trade_count_new"])
                                 | (merged["vwap_old"] != merged["vwap_new"])]
            assert sorted(changes["timestamp"]) == sorted(differs["timestamp"].astype("int64") // 10**9), (symbol, tf)
            assert (differs["_merge"] != "left_only").all()  # late reports add, never take away
            row = changes.merge(differs.assign(timestamp=differs["timestamp"].astype("int64") // 10**9), on="timestamp")
            late = row["change"].map(CHANGE_NAMES) == "added_late"
            assert ((late == (row["_merge"] == "right_only")).all()
                    and set(row["change"].map(CHANGE_NAMES)) <= {"restated", "added_late"})
            for column in ("volume", "trade_count", "vwap", "close", "high"):
                assert (row.loc[~late, f"old_{column}"] == row.loc[~late, f"{column}_old"]).all(), (symbol, tf, column)
                assert (row[f"new_{column}"] == row[f"{column}_new"]).all(), (symbol, tf, column)
            assert (row.loc[~late, "old_close"] == row.loc[~late, "new_close"]).all()  # prices unchanged
            beyond[tf] |= bool((row.loc[~late, "new_volume"] - row.loc[~late, "old_volume"]).abs().gt(
                0.05 * row.loc[~late, "old_volume"]).any())
    assert {e["run_id"] for e in entries} <= {r.run_id for r in instance.get_runs()}

    # known_at before each revision reads exactly what was stored then, raw and adjusted.
    for name in ("fetch", "settle 1", "settle 5"):
        for tf in TIMEFRAMES:
            assert_same(stored(symbols[tf], tf, known_at=moments[name]), answers[name][tf], f"known at {name} {tf}")
    assert all(frame.empty for frame in stored(watchlist, "1Day", known_at=FETCH).values())  # nothing stored yet then
    split = parse_action("forward_splits", {"id": "split-aapl-test", "symbol": "AAPL", "new_rate": 4, "old_rate": 1,
                                            "ex_date": "2024-06-05", "process_date": "2024-06-05",
                                            "cusip": "037833100"})
    item = to_item(split, resolve_symbol("AAPL", None, DynamoDBResource.from_settings()), "AAPL")
    MarketDataTable(DynamoDBResource.from_settings()).put([{**item, "recorded_at": moments["settle 1"].strftime(
        "%Y-%m-%dT%H:%M:%SZ")}])  # recorded between the first and the second settle
    raw, later = (read_bars("AAPL", "1Day", START, END, known_at=m) for m in (moments["fetch"], moments["settle 5"]))
    pd.testing.assert_frame_equal(read_bars("AAPL", "1Day", START, END, adjustment="split", known_at=moments["fetch"]),
                                  raw, check_dtype=False)  # the split was not known yet
    adjusted = read_bars("AAPL", "1Day", START, END, adjustment="split", known_at=moments["settle 5"])
    assert (adjusted["close"] == later["close"] / 4).all() and (adjusted["volume"] == later["volume"] * 4).all()

    # The check and the event fire once per revision; a rerun changes nothing.
    assert checks["fetch"] == {"1Day": True, "1Min": True} and not beyond["1Day"]  # daily volumes move 0.06% .. 1.6%
    assert checks["settle 1"] == {tf: not beyond[tf] for tf in TIMEFRAMES}
    again, _ = tick(settle_bars_schedule, SETTLE_5, instance, env, watchlist)
    assert tap.drain() == [] and len(ledger(env)) == len(entries)
    assert all(check_results(r)["restatements_within_tolerance"] for r in again.values())
    for tf in TIMEFRAMES:
        assert_same(stored(symbols[tf], tf), answers["settle 5"][tf], f"rerun {tf}")


def test_a_withdrawn_bar_is_kept_and_flagged_a_broken_revision_refused_and_a_lost_ledger_entry_a_typed_error(revising):
    env, watchlist, _ = revising
    instance, symbols = dg.DagsterInstance.ephemeral(), {"1Day": ["AAPL"], "1Min": watchlist}
    _, at = tick(settle_bars_schedule, SETTLE_5, instance, env, watchlist)  # first stored settled, late reports in
    settled = {tf: served(symbols[tf], tf) for tf in TIMEFRAMES}
    # Alpaca answers an earlier state again (issue 209: "missing again")
    tick(daily_bars_schedule, FETCH, instance, env, watchlist)
    earlier = {tf: served(symbols[tf], tf) for tf in TIMEFRAMES}
    withdrawn = {s: set(settled["1Min"][s]["timestamp"]) - set(earlier["1Min"][s]["timestamp"]) for s in watchlist}
    assert sum(map(len, withdrawn.values())) > 0
    for symbol in watchlist:  # kept in the table, left out of reads now, there in reads known before
        now, then = read_bars(symbol, "1Min", START, END), read_bars(symbol, "1Min", START, END, known_at=at)
        assert not set(now["timestamp"]) & withdrawn[symbol] and withdrawn[symbol] <= set(then["timestamp"])
        assert_same({symbol: then}, {symbol: settled["1Min"][symbol]}, "known before the withdrawal")
    items = [i for i in DynamoDBResource.from_settings().scan(env["SIGNAL9_MARKET_DATA_TABLE"])
             if i["series"].endswith("#1Min") and i.get("withdrawn")]
    assert sum(len(i["withdrawn"]) for i in items) == sum(map(len, withdrawn.values()))

    # A revision that breaks a bar is held back: the stored bar stays, the ledger records the refusal.
    before = read_bars("AAPL", "1Day", START, END)
    requests.post(f"{env['SIGNAL9_SANDBOX_URL']}/_sandbox/faults", json={"invalid_bar_symbols": ["AAPL"]}, timeout=10)
    refused, _ = tick(settle_bars_schedule, SETTLE_5, instance, env, watchlist)
    requests.post(f"{env['SIGNAL9_SANDBOX_URL']}/_sandbox/faults", json={}, timeout=10)
    assert check_results(refused["1Day"])["ohlc_consistent"] is False
    pd.testing.assert_frame_equal(read_bars("AAPL", "1Day", START, END), before)
    entries = [e for e in ledger(env) if e["symbol"] == "AAPL" and e["timeframe"] == "1Day" and e.get("bars_refused")]
    assert len(entries) == 1 and [r["field"] for r in entries[0]["refusals"]] == ["l"]

    # A ledger entry that is gone makes known_at reads fail, naming the series and the fix; never the latest values.
    entry = next(e for e in ledger(env) if e["symbol"] == "AAPL" and e["timeframe"] == "1Min")
    DynamoDBResource.from_settings().client().delete_item(TableName=env["SIGNAL9_MARKET_DATA_TABLE"],
                                                          Key={"series": {"S": entry["series"]},
                                                               "day": {"S": entry["day"]}})
    with pytest.raises(LedgerError, match=r"series .*#1Min.*lacks its entry.*point-in-time recovery"):
        read_bars("AAPL", "1Min", START, END, known_at=at)
