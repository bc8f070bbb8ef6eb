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

from signal9_devstack.sandbox.churn import Churn, churn
from signal9_pipeline.market_data.codec import decode
from signal9_pipeline.market_data.days import bucket_start, is_session, trading_days
from signal9_pipeline.resources.dynamodb import WRITE_SENT, DynamoDBResource
from signal9_pipeline.tables.assets import EVENTS_MARKER, POLLENATION_MARKER, AssetsTable, is_listed
from signal9_pipeline.tables.market_data import MarketDataTable, bars_series, unpack_ids
from signal9_pipeline_tests.reliability.forked_runs import ForkServer, RunOutcome
from signal9_pipeline_tests.reliability.tables import sandbox_daily_bars, sandbox_keys
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
        self.tap = EventTap(env["SIGNAL9_EVENT_BUS"], f"soak-{uuid.uuid4().hex[:8]}",
                            ["pollenationNeeded", "assetStatusChanged"])

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
        steps = [("sync", {}), ("pollenate", {})] + ([("bars", {"first": day, "last": day})]
                                                     if is_session(trading_date) else [])
        return self.server.run(steps, dagster_home=self.dagster_home, timeout_s=900)

    def _figures(self, number: int, trading_date: date, changes: str, outcome: RunOutcome,
                 problems: list[str]) -> DayFigures:
        if not outcome.succeeded:
            problems = [f"the day's runs failed: {outcome.steps} {outcome.error[-1500:]}"] + problems
        stats = requests.get(f"{self.env['SIGNAL9_SANDBOX_URL']}/_sandbox/stats", timeout=30).json()
        runs = sum(s.get("runs", 0) for s in outcome.steps)
        return DayFigures(number, trading_date.isoformat(), changes, len(stats["requests"]), outcome.dynamodb_writes,
                          runs, outcome.peak_rss_mb, outcome.wall_s, problems)

    def _table_problems(self, trading_date: date, with_bars: bool = True) -> list[str]:
        dynamodb = DynamoDBResource.from_settings()
        table = AssetsTable(dynamodb)
        views = {v["symbol"]: v for v in table.views()}
        companies = {c["alpaca_id"]: c for c in table.companies()}
        problems = asset_problems(views, companies, self.model)
        if not with_bars:
            return problems
        return problems + bar_problems(dynamodb, companies, sandbox_keys(self.env["SIGNAL9_SANDBOX_URL"]), trading_date)


def asset_problems(views: dict[str, dict], companies: dict[str, dict], model: Model) -> list[str]:
    """The symbol items against the model (listed, inactive, renamed), and nothing left owing on a company."""
    listed = {s for s, v in views.items() if is_listed(v)}
    problems = []
    if listed != model.listed:
        problems.append(f"listed: missing {sorted(model.listed - listed)[:5]},"
                        f" unexpected {sorted(listed - model.listed)[:5]}")
    if set(views) - listed != model.inactive:
        problems.append(f"inactive: {sorted((set(views) - listed) ^ model.inactive)[:5]} differ")
    problems += [f"{s}: key {v['asset_id']}" for s, v in views.items() if v["asset_id"] != f"ASSET#{s}"][:3]
    problems += [f"{old}: renamed_to {views.get(old, {}).get('renamed_to')}, expected {new}"
                 for old, new in model.renamed_to.items() if views.get(old, {}).get("renamed_to") != new][:3]
    owing = [c["symbol"] for c in companies.values() if {POLLENATION_MARKER, EVENTS_MARKER, "pending_events"} & set(c)
             or c.get("pollenation_status") != "done"]
    return problems + ([f"still owing pollenation or events: {sorted(owing)[:5]}"] if owing else [])


def bar_problems(dynamodb: DynamoDBResource, companies: dict[str, dict], keys: dict[str, str],
                 trading_date: date) -> list[str]:
    """Each company of the day that traded has that day's bar in its year bucket, with the sandbox's count.

    A simulated date lies before every status the table recorded (those carry the wall clock's time), so
    every company the table holds counts as listed on it, delisted ones included, and the sandbox serves its
    history (by its key, `sandbox_keys`), whatever its status today.
    """
    day = trading_date.isoformat()
    crypto = {i: c.get("asset_class") == "crypto" for i, c in companies.items()}
    expected = {i: n for i in companies if (n := sandbox_daily_bars(keys[i], trading_date, crypto=crypto[i]))}
    bucket = bucket_start(trading_date, "1Day").isoformat()
    wanted = [(bars_series(i, "1Day"), bucket) for i in sorted(companies)] + [("#PARTITION#1Day", day)]
    stored = {series: item for (series, _), item in
              MarketDataTable(dynamodb).get(wanted,
                                            projection=["series", "day", "alpaca_id", "bars", "asset_ids"]).items()}
    manifest = unpack_ids(stored.pop("#PARTITION#1Day", {}).get("asset_ids"))
    counts = {}
    for item in stored.values():
        bars = decode(item["bars"])[0]
        if n := int((trading_days(bars["timestamp"], crypto=crypto[item["alpaca_id"]]) == day).sum()):
            counts[item["alpaca_id"]] = n
    symbol = {i: c["symbol"] for i, c in companies.items()}.get
    problems = [] if counts == expected else [
        f"bars of {day}: missing {sorted(map(symbol, set(expected) - set(counts)))[:5]}, "
        f"unexpected {sorted(map(symbol, set(counts) - set(expected)))[:5]}, "
        f"wrong counts {sorted(symbol(i) for i in set(counts) & set(expected) if counts[i] != expected[i])[:5]}"]
    return problems + ([] if manifest == set(expected) else [f"manifest of {day} does not name exactly its companies"])


def rss_growth_mb(peaks: list[float]) -> float:
    """Growth of peak RSS from the first to the last day along a least-squares line: a trend, not one noisy day."""
    n = len(peaks)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(peaks) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(peaks)) / sum((x - mean_x) ** 2 for x in range(n))
    return slope * (n - 1)
