"""Sync -> sensor -> pollenation runs on the local stack; events read back from an SQS queue behind the bus."""

import collections
import json
import os
import random
import signal
import subprocess
import sys

import dagster as dg

from signal9_devstack.sandbox.churn import churn
from signal9_pipeline.pollenation.sensor import pending_companies
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.tables.assets import AssetsTable
from signal9_pipeline_tests.support import EventTap, drive_sensor, put_universe, run_sync, small_universe


def by_type(envelopes: list[dict]) -> dict[str, list[dict]]:
    grouped = collections.defaultdict(list)
    for envelope in envelopes:
        grouped[envelope["detail-type"]].append(envelope["detail"])
    return grouped


def test_listings_and_delistings_deliver_each_event_exactly_once(sync_env, default_universe, monkeypatch):
    monkeypatch.setenv("SIGNAL9_POLLENATION_MAX_RUNS", "4")
    base = small_universe(default_universe, n=150)
    put_universe(sync_env, base)
    with dg.instance_for_test() as instance:
        assert run_sync(instance=instance).success
        drive_sensor(instance)  # the first load's own pollenation
        tap = EventTap(sync_env["SIGNAL9_EVENT_BUS"], "pollenation-e2e", ["pollenationNeeded", "assetStatusChanged"])
        day = churn(base, random.Random(5), listings=37, delistings=4)
        put_universe(sync_env, day.universe)
        assert run_sync(instance=instance).success
        runs = len(drive_sensor(instance))
        delivered = by_type(tap.drain())
        assert runs == 1 and pending_companies(DynamoDBResource.from_settings()) == []
        needed = delivered["pollenationNeeded"]
        assert sorted(d["assetId"] for d in needed) == sorted(day.listed)
        assert len({d["eventId"] for d in needed}) == 37
        assert all(d["dataTypes"] == ["company_overview", "earnings", "cash_flow", "balance_sheet", "income_statement"]
                   and d["priority"] == "high" and d["source"] == "new_asset" for d in needed)
        listed_ids = {a["symbol"]: a["id"] for a in day.universe}
        assert all(d["alpacaId"] == listed_ids[d["assetId"]] for d in needed)
        changed = delivered["assetStatusChanged"]
        assert sorted(d["symbol"] for d in changed) == sorted(day.delisted)
        assert all(d["oldStatus"] == "active" and d["newStatus"] == "inactive" and d["alpacaId"] and d["timestamp"]
                   for d in changed)

        assert run_sync(instance=instance).success  # all of it again
        assert drive_sensor(instance) == []
        assert tap.drain() == []
        items = {i["symbol"]: i for i in AssetsTable(DynamoDBResource.from_settings()).companies()}
        assert not any("pending_events" in i or "events_pending" in i or "pollenation_pending" in i
                       for i in items.values())
        assert {items[s]["pollenation_status"] for s in day.listed} == {"done"}
        from datetime import datetime, timedelta

        from signal9_pipeline.market_data import read_bars

        history = read_bars(day.listed[0], "1Day", datetime.now() - timedelta(days=31), datetime.now())
        # the month of daily bars pollenation loaded (SIGNAL9_POLLENATION_HISTORY_DAYS=30)
        assert 15 <= len(history) <= 23
        # What pollenation stored shows in the catalog: its events, and the ohlc_bars partitions its history covers.
        assert instance.get_latest_materialization_event(dg.AssetKey("pollenation_events")) is not None
        partitions = instance.get_materialized_partitions(dg.AssetKey("ohlc_bars"))
        sessions = {b.tz_convert("America/New_York").date().isoformat() for b in history["timestamp"]}
        assert {f"{d}|1Day" for d in sessions} <= partitions and all(p.endswith("|1Day") for p in partitions)


def test_a_run_killed_after_sending_its_events_is_repaired_by_the_next_run(sync_env, default_universe):
    put_universe(sync_env, small_universe(default_universe, n=30)[:30])
    tap = EventTap(sync_env["SIGNAL9_EVENT_BUS"], "pollenation-kill", ["pollenationNeeded"])
    with dg.instance_for_test() as instance:
        assert run_sync(instance=instance).success
        symbols = pending_companies(DynamoDBResource.from_settings())
        config = {"ops": {"announce_new_symbols": {"config": {"asset_ids": symbols}}}}
        script = ("import json, sys; from signal9_pipeline.definitions import defs; "
                  "defs.resolve_job_def('pollenation_job').execute_in_process(run_config=json.loads(sys.argv[1]))")
        killed = subprocess.run([sys.executable, "-c", script, json.dumps(config)], timeout=300, capture_output=True,
                                env={**os.environ, "SIGNAL9_FAILPOINT": "pollenation.after_publish"})
        assert killed.returncode == -signal.SIGKILL
        first = tap.drain()
        # sent, not yet marked
        assert len(first) == 30 and pending_companies(DynamoDBResource.from_settings()) == symbols
        assert len(drive_sensor(instance)) == 1
        second = tap.drain()
        ids = collections.Counter(e["detail"]["eventId"] for e in first + second)
        assert set(ids.values()) == {2} and len(ids) == 30  # each id at most twice: consumers drop the repeat
        assert pending_companies(DynamoDBResource.from_settings()) == []


def test_undelivered_events_keep_their_symbols_pending(sync_env, default_universe, monkeypatch):
    put_universe(sync_env, small_universe(default_universe, n=12)[:12])
    with dg.instance_for_test() as instance:
        assert run_sync(instance=instance).success
        symbols = pending_companies(DynamoDBResource.from_settings())
        monkeypatch.setenv("SIGNAL9_EVENT_BUS", "no-such-bus")
        from signal9_pipeline.definitions import defs

        result = defs.resolve_job_def("pollenation_job").execute_in_process(
            run_config={"ops": {"announce_new_symbols": {"config": {"asset_ids": symbols}}}}, instance=instance,
            raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert failure.step_key == "mark_pollenated" and "stay pending" in failure.event_specific_data.error.message
        assert pending_companies(DynamoDBResource.from_settings()) == symbols
