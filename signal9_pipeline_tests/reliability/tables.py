"""What the reliability tests compare: full table scans, reduced to what must not depend on when a run ran.

A crashed run and its rerun write some items with the killed run's clock and the
rest with the rerun's, so attributes stamped with the writing run's time cannot
equal an uninterrupted run's. They are masked (kept present, value replaced), and
everything else must be equal. The expected bar counts come from the sandbox's
bar generator, the stand-in for Alpaca, not from the pipeline.
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import Any
from zoneinfo import ZoneInfo

import requests

from signal9_devstack.sandbox.bars import BarGenerator
from signal9_pipeline.resources.dynamodb import DynamoDBResource, to_dynamo

# Each is set to the writing run's `now` (the sync's, pollenation's or the bars run's start time).
ASSET_RUN_TIMES = ("created_at", "updated_at", "first_seen_at", "last_seen_at", "status_changed_at",
                   "pollenation_pending_since", "pollenated_at", "at",
                   # a company's write counter, and what a symbol item was derived from (a hash with `updated_at`)
                   "revision", "view_of")
# `version` counts a bucket's writes: a rerun after a crash writes again what the killed run wrote, so it is a
# write counter rather than content, masked like the run times.
BARS_RUN_TIMES = ("ingested_at", "version", "run_id", "ledger_from")
BARS_RUN_TIME_MAPS = ("days_stored", "withdrawn")  # day (or bar) -> the writing run's time
RUN_TIME = "<run time>"
KEYS = {"assets": ("asset_id",), "market_data": ("series", "day")}

Snapshot = dict[tuple, dict[str, Any]]


def scan(table: str, kind: str) -> Snapshot:
    """Every item of the table by key, as the pipeline reads them."""
    return {tuple(item[k] for k in KEYS[kind]): item for item in DynamoDBResource.from_settings().scan(table)}


def restore(table: str, kind: str, snapshot: Snapshot) -> None:
    """Make the table hold exactly `snapshot`: other items deleted, the snapshot's items put back whole."""
    dynamodb = DynamoDBResource.from_settings()
    extra = [key for key in scan(table, kind) if key not in snapshot]
    dynamodb.write_batches(table, ({"DeleteRequest": {"Key": to_dynamo(dict(zip(KEYS[kind], key)))}} for key in extra))
    dynamodb.put_items(table, snapshot.values())


def masked_asset(item: dict[str, Any]) -> dict[str, Any]:
    """An assets item without its run times: the status history keeps its statuses, notes and order.

    An outbox event's id is a hash of its detail, which holds the change's time, so it is masked too;
    after a complete run no item holds outbox events at all (checked separately).
    """
    masked = {k: (RUN_TIME if k in ASSET_RUN_TIMES else v) for k, v in item.items()}
    if "status_history" in masked:
        masked["status_history"] = [{**entry, "at": RUN_TIME} for entry in masked["status_history"]]
    if "pending_events" in masked:
        masked["pending_events"] = [{**e, "event_id": RUN_TIME, "detail": {**e["detail"], "timestamp": RUN_TIME}}
                                    for e in masked["pending_events"]]
    return masked


def masked_bars(item: dict[str, Any]) -> dict[str, Any]:
    return {k: (RUN_TIME if k in BARS_RUN_TIMES else dict.fromkeys(v, RUN_TIME) if k in BARS_RUN_TIME_MAPS else v)
            for k, v in item.items()}


def masked(snapshot: Snapshot, kind: str) -> Snapshot:
    mask = masked_asset if kind == "assets" else masked_bars
    return {key: mask(item) for key, item in snapshot.items()}


def differences(actual: Snapshot, expected: Snapshot, kind: str) -> dict[str, list]:
    """Keys missing, unexpected, and present in both with other (masked) contents."""
    got, want = masked(actual, kind), masked(expected, kind)
    return {"missing": sorted(set(want) - set(got)), "unexpected": sorted(set(got) - set(want)),
            "changed": sorted(k for k in set(got) & set(want) if got[k] != want[k])}


Tables = dict[str, Snapshot]  # "assets" / "market_data" -> snapshot


def scan_tables() -> Tables:
    """Both tables the pipeline writes, as configured now."""
    dynamodb = DynamoDBResource.from_settings()
    return {"assets": scan(dynamodb.assets_table_name(), "assets"),
            "market_data": scan(dynamodb.market_data_table_name(), "market_data")}


def comparable(tables: Tables) -> Tables:
    """Both tables without the times at which runs happened to write them."""
    return {kind: masked(snapshot, kind) for kind, snapshot in tables.items()}


def items_lost(expected: Tables, actual: Tables) -> int:
    """Items of `expected` (masked) that `actual` (masked) lacks or holds with other content."""
    return sum(actual[kind].get(key) != item for kind, snapshot in expected.items() for key, item in snapshot.items())


def sandbox_keys(sandbox_url: str) -> dict[str, str]:
    """Alpaca id -> the key the sandbox derives that company's bars from (its first symbol; a reused ticker's is its
    own)."""
    entities = requests.get(f"{sandbox_url}/_sandbox/history", timeout=60).json()["entities"]
    return {e["id"]: e["key"] for e in entities}


def sandbox_daily_bars(key: str, day: date, *, crypto: bool, feed: str = "iex") -> int:
    """How many 1Day bars the sandbox serves for a company (by its key) on a trading date (0 or 1; 0 on days it did not
    trade), from the feed the pipeline asks for (its default, IEX)."""
    midnight = datetime.combine(day, time(0), timezone.utc if crypto else ZoneInfo("America/New_York"))
    minute = int(midnight.timestamp()) // 60
    return sum(len(bars) for bars in BarGenerator(key, crypto=crypto).bars("1Day", minute, minute, feed=feed))
