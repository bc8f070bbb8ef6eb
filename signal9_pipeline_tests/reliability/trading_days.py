"""Consecutive simulated trading days on the local stack, checked each day against an independent model.

Each day the sandbox's universe changes by a seeded random churn (listings,
delistings, reactivations, renames), then one fresh process runs that day's
asset sync, new_symbols_sensor ticks with the pollenation runs they ask for, and
the day's ohlc_bars 1Day partition. The model of what the tables must hold is
built from the churn log alone (not from the pipeline's own diffing), and the
sandbox's bar generator says which symbol-days have bars. The soak test runs a
few days; `python -m benchmarks.soak` runs thirty and prints the figures.
"""

from __future__ import annotations

import collections
import random
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import requests

from signal9_pipeline.assets_sync.changes import EVENTS_MARKER, POLLENATION_MARKER, is_listed
from signal9_pipeline.market_data.codec import decode
from signal9_pipeline.market_data.days import bucket_start, is_session, trading_days
from signal9_pipeline.resources.dynamodb import WRITE_SENT, DynamoDBResource
from signal9_pipeline.sandbox.churn import Churn, churn
from signal9_pipeline_tests.reliability.forked_runs import ForkServer, RunOutcome
from signal9_pipeline_tests.reliability.tables import sandbox_daily_bars
from signal9_pipeline_tests.support import EventTap, put_universe

FIRST_DATE = date(2024, 3, 4)
SETTINGS = {"SIGNAL9_POLLENATION_HISTORY_DAYS": "5", "SIGNAL9_FAILPOINT": f"{WRITE_SENT}#0"}  # #0: count writes only


def trading_dates(count: int, first: date = FIRST_DATE) -> list[date]:
    dates, day = [], first
    while len(dates) < count:
        if is_session(day):
            dates.append(day)
        day += timedelta(days=1)
    return dates


@dataclass
class Model:
    """What the assets table must hold, kept from the churn log."""

    listed: set[str]
    inactive: set[str] = field(default_factory=set)
    renamed_to: dict[str, str] = field(default_factory=dict)

    def apply(self, day: Churn) -> None:
        self.listed -= set(day.delisted) | set(day.renamed)
        self.inactive |= set(day.delisted) | set(day.renamed)
        self.inactive -= set(day.reactivated)
        self.listed |= set(day.listed) | set(day.reactivated) | set(day.renamed.values())
        self.renamed_to.update(day.renamed)

    def expected_events(self, day: Churn) -> collections.Counter:
        """(event type, symbol, new status) of every event the day owes, once each."""
        changes = [("assetStatusChanged", s, "inactive") for s in [*day.delisted, *day.renamed]]
        changes += [("assetStatusChanged", s, "active") for s in day.reactivated]
        changes += [("pollenationNeeded", s, "") for s in [*day.listed, *day.renamed.values()]]
        return collections.Counter(changes)


@dataclass
class DayFigures:
    day: int
    trading_date: str
    changes: str
    api_requests: int
    dynamodb_writes: int
    pollenation_runs: int
    peak_rss_mb: float
    wall_s: float
    problems: list[str]


def delivered_events(envelopes: list[dict]) -> collections.Counter:
    """Delivered events, once per event id, as (type, symbol, new status)."""
    unique = {e["detail"]["eventId"]: e for e in envelopes}.values()
    return collections.Counter((e["detail-type"], e["detail"].get("symbol") or e["detail"]["assetId"],
                                e["detail"].get("newStatus", "")) for e in unique)


class TradingDays:
    """The simulation: the sandbox universe, the model, and a fork server running each day in a fresh process."""

    def __init__(self, env: dict[str, str], universe: list[dict], seed: int, workdir: Path):
        self.env, self.universe, self.rng = env, universe, random.Random(seed)
        self.model = Model({a["symbol"] for a in universe if is_listed(a)})
        (workdir / "dagster").mkdir(parents=True, exist_ok=True)
        self.dagster_home = str(workdir / "dagster")
        self.server = ForkServer({**env, **SETTINGS}, workdir / "runs.log")
        self.tap = EventTap(env["SIGNAL9_EVENT_BUS"], f"soak-{uuid.uuid4().hex[:8]}", ["pollenationNeeded", "assetStatusChanged"])

    def close(self) -> None:
        self.server.close()

    def first_load(self) -> DayFigures:
        """Day 0: the first sync of the universe and the pollenation of all of it."""
        put_universe(self.env, self.universe)
        first = FIRST_DATE - timedelta(days=1)
        outcome = self._run(first)
        self.tap.drain()
        return self._figures(0, first, "first load", outcome, self._table_problems(first, with_bars=False))

    def trading_day(self, number: int, trading_date: date) -> DayFigures:
        day = self._churn()
        self.universe = day.universe
        put_universe(self.env, day.universe)
        outcome = self._run(trading_date)
        self.model.apply(day)
        problems = self._table_problems(trading_date)
        delivered, expected = delivered_events(self.tap.drain()), self.model.expected_events(day)
        if delivered != expected:
            problems.append(f"events: missing {expected - delivered}, unexpected {delivered - expected}")
        changes = f"+{len(day.listed)} -{len(day.delisted)} r{len(day.reactivated)} n{len(day.renamed)}"
        return self._figures(number, trading_date, changes, outcome, problems)

    def _churn(self) -> Churn:
        present = {a["symbol"] for a in self.universe if a["status"] == "inactive"}
        candidates = sorted(s for s in self.model.inactive if s in present)
        return churn(self.universe, self.rng, listings=self.rng.randint(2, 8), delistings=self.rng.randint(1, 4),
                     reactivations=self.rng.randint(0, min(2, len(candidates))), renames=self.rng.randint(0, 2),
                     reactivate_from=self.rng.sample(candidates, len(candidates)))

    def _run(self, trading_date: date) -> RunOutcome:
        requests.post(f"{self.env['SIGNAL9_SANDBOX_URL']}/_sandbox/reset", timeout=10).raise_for_status()
        day = trading_date.isoformat()
        steps = [("sync", {}), ("pollenate", {})] + ([("bars", {"first": day, "last": day})] if is_session(trading_date) else [])
        return self.server.run(steps, dagster_home=self.dagster_home, timeout_s=900)

    def _figures(self, number: int, trading_date: date, changes: str, outcome: RunOutcome, problems: list[str]) -> DayFigures:
        if not outcome.succeeded:
            problems = [f"the day's runs failed: {outcome.steps} {outcome.error[-1500:]}"] + problems
        stats = requests.get(f"{self.env['SIGNAL9_SANDBOX_URL']}/_sandbox/stats", timeout=30).json()
        runs = sum(s.get("runs", 0) for s in outcome.steps)
        return DayFigures(number, trading_date.isoformat(), changes, len(stats["requests"]), outcome.dynamodb_writes,
                          runs, outcome.peak_rss_mb, outcome.wall_s, problems)

    def _table_problems(self, trading_date: date, with_bars: bool = True) -> list[str]:
        dynamodb = DynamoDBResource.from_settings()
        items = {i["symbol"]: i for i in dynamodb.scan(dynamodb.assets_table_name())}
        problems = asset_problems(items, self.model)
        served = {a["symbol"] for a in self.universe}
        return problems + (bar_problems(dynamodb, served, items, trading_date) if with_bars else [])


def asset_problems(items: dict[str, dict], model: Model) -> list[str]:
    listed = {s for s, i in items.items() if is_listed(i)}
    problems = []
    if listed != model.listed:
        problems.append(f"listed: missing {sorted(model.listed - listed)[:5]}, unexpected {sorted(listed - model.listed)[:5]}")
    if set(items) - listed != model.inactive:
        problems.append(f"inactive: {sorted((set(items) - listed) ^ model.inactive)[:5]} differ")
    problems += [f"{s}: key {i['asset_id']}" for s, i in items.items() if i["asset_id"] != f"ASSET#{s}"][:3]
    problems += [f"{old}: renamed_to {items.get(old, {}).get('renamed_to')}, expected {new}"
                 for old, new in model.renamed_to.items() if items.get(old, {}).get("renamed_to") != new][:3]
    owing = [s for s, i in items.items() if {POLLENATION_MARKER, EVENTS_MARKER, "pending_events"} & set(i)
             or i.get("pollenation_status") != "done"]
    return problems + ([f"still owing pollenation or events: {sorted(owing)[:5]}"] if owing else [])


def bar_problems(dynamodb: DynamoDBResource, served: set[str], items: dict[str, dict], trading_date: date) -> list[str]:
    """Each symbol of the day that traded has that day's bar in its year bucket, with the sandbox's count.

    A simulated date lies before every status the table recorded (those carry the wall clock's time), so
    every asset the table holds counts as listed on it, delisted ones included; the sandbox serves bars of
    the assets in its universe, whatever their status.
    """
    day = trading_date.isoformat()
    crypto = {s: i.get("asset_class") == "crypto" for s, i in items.items()}
    expected = {s: n for s in set(items) & served if (n := sandbox_daily_bars(s, trading_date, crypto=crypto[s]))}
    bucket = bucket_start(trading_date, "1Day").isoformat()
    keys = [{"series": f"{s}#1Day", "day": bucket} for s in sorted(items)] + [{"series": "#PARTITION#1Day", "day": day}]
    stored = {i["series"]: i for i in dynamodb.get_items(dynamodb.market_data_table_name(), keys,
                                                        projection=["series", "symbol", "bars", "symbols"])}
    manifest = set(stored.pop("#PARTITION#1Day", {}).get("symbols", []))
    counts = {}
    for item in stored.values():
        bars = decode(item["bars"])[0]
        if n := int((trading_days(bars["timestamp"], crypto=crypto[item["symbol"]]) == day).sum()):
            counts[item["symbol"]] = n
    problems = [] if counts == expected else [
        f"bars of {day}: missing {sorted(set(expected) - set(counts))[:5]}, unexpected {sorted(set(counts) - set(expected))[:5]}, "
        f"wrong counts {sorted(s for s in set(counts) & set(expected) if counts[s] != expected[s])[:5]}"]
    return problems + ([] if manifest == set(expected) else [f"manifest of {day} does not name exactly its symbols"])


def rss_growth_mb(peaks: list[float]) -> float:
    """Growth of peak RSS from the first to the last day along a least-squares line: a trend, not one noisy day."""
    n = len(peaks)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(peaks) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(peaks)) / sum((x - mean_x) ** 2 for x in range(n))
    return slope * (n - 1)
