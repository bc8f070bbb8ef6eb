"""SIGKILL at random DynamoDB writes of the asset sync and of ohlc_bars, then rerun: the tables must converge.

Each pipeline first runs uninterrupted from a fixed starting state, which
measures how many write requests it makes and gives the state every crashed
run must reach. Kill points are then drawn with a seeded RNG over that range,
half just before a request is sent and half just after DynamoDB answered it.
For each point the tables are put back to the starting state, a run is killed
there (a real process, SIGKILL from a counted failpoint) and reruns in fresh
processes finish the work. The tables must then equal the uninterrupted run's
except for the attributes stamped with the writing run's clock (see `tables`),
items the day did not change must not have been rewritten at all, no outbox
marker may be left, and every event must have been delivered, a repeat only
with the id of the first delivery.
"""

from __future__ import annotations

import collections
import copy
import json
import os
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

import pytest

from signal9_devstack.sandbox.churn import churn
from signal9_pipeline.market_data.codec import decode
from signal9_pipeline.market_data.days import trading_days
from signal9_pipeline.resources.dynamodb import WRITE_ANSWERED, WRITE_SENT
from signal9_pipeline.tables.assets import EVENTS_MARKER, POLLENATION_MARKER, is_listed
from signal9_pipeline.tables.market_data import unpack_ids
from signal9_pipeline_tests.reliability import tables
from signal9_pipeline_tests.reliability.forked_runs import ForkServer, RunOutcome, Step
from signal9_pipeline_tests.support import EventTap, put_universe, small_universe

pytestmark = pytest.mark.slow

SEED = 9
# Per pipeline; half before a request is sent, half after it was answered. `make test` draws 8 (about two
# minutes); `make reliability` (benchmarks.reliability) draws 20.
KILL_POINTS = int(os.environ.get("SIGNAL9_KILL_POINTS", "8"))
# Items per BatchWriteItem in the runs under test: many write requests from small universes. The sync's
# puts go one by one, so a kill can fall between any two, e.g. the two puts of a rename.
SYNC_BATCH_SIZE, BARS_BATCH_SIZE = 1, 3
COUNT_WRITES = {"SIGNAL9_FAILPOINT": f"{WRITE_SENT}#0"}
SYNC: list[Step] = [("sync", {})]
SYNC_AND_POLLENATE: list[Step] = [("sync", {}), ("pollenate", {})]
# After a killed sync the sensor keeps ticking (every 30 s) before anyone reruns the sync.
SYNC_RERUN: list[Step] = [("pollenate", {}), ("sync", {}), ("pollenate", {})]
BAR_DATES = {"first": "2024-06-03", "last": "2024-06-05"}
BARS: list[Step] = [("bars", BAR_DATES)]
WATCHED_EVENTS = ["pollenationNeeded", "assetStatusChanged"]


@dataclass
class Cycle:
    """One kill point (or a chain of them) and what the rerun left."""

    points: list[str]
    problems: list[str] = field(default_factory=list)
    lost: int = 0


@pytest.fixture
def fork_server(bars_env, monkeypatch, tmp_path) -> Iterator[ForkServer]:
    monkeypatch.setenv("SIGNAL9_POLLENATION_HISTORY_DAYS", "5")
    with ForkServer(dict(os.environ), tmp_path / "runs.log") as server:
        yield server


def kill_points(writes: int, count: int, rng: random.Random) -> list[str]:
    before = rng.sample(range(1, writes + 1), count // 2)
    after = rng.sample(range(1, writes + 1), count - count // 2)
    return [f"{WRITE_SENT}#{n}" for n in before] + [f"{WRITE_ANSWERED}#{n}" for n in after]


def must_succeed(outcome: RunOutcome, what: str) -> RunOutcome:
    assert outcome.succeeded, f"{what} did not succeed: {outcome.steps} {outcome.error} (exit {outcome.exit_code})"
    return outcome


def killed_at(server: ForkServer, steps: list[Step], point: str, batch_size: int) -> str:
    """Run `steps` armed to die at `point`; a problem when the process was not killed there."""
    outcome = server.run(steps, {"SIGNAL9_FAILPOINT": point}, batch_size=batch_size)
    return "" if outcome.killed else (f"{point}: the run was not killed"
                                      f" (exit {outcome.exit_code}, {outcome.error[-300:]})")


def table_problems(actual: tables.Snapshot, expected: tables.Snapshot, kind: str) -> tuple[list[str], int]:
    diff = tables.differences(actual, expected, kind)
    problems = [f"{kind}: {name} {keys[:5]}" for name, keys in diff.items() if keys]
    return problems, len(diff["missing"])


def untouched_rewritten(actual: tables.Snapshot, before: tables.Snapshot, expected: tables.Snapshot) -> list[str]:
    """Items the uninterrupted run left exactly as they were must be exactly as they were after a crash too."""
    return [f"rewritten though unchanged: {k}" for k in before
            if expected.get(k) == before[k] and actual.get(k) != before[k]][:5]


def markers_left(assets: tables.Snapshot) -> list[str]:
    stale = [i.get("symbol") for i in assets.values()
             if {POLLENATION_MARKER, EVENTS_MARKER, "pending_events"} & set(i)]
    return [f"pending markers left on {stale[:5]}"] if stale else []


# --- events -------------------------------------------------------------------------------------------


def subject(envelope: dict) -> str:
    """What an event is about, without its time and id: equal for the same change whenever it was sent."""
    detail = {k: v for k, v in envelope["detail"].items() if k not in ("eventId", "timestamp")}
    return json.dumps([envelope["detail-type"], detail], sort_keys=True)


def ids_by_subject(envelopes: list[dict]) -> dict[str, set[str]]:
    ids: dict[str, set[str]] = collections.defaultdict(set)
    for envelope in envelopes:
        ids[subject(envelope)].add(envelope["detail"]["eventId"])
    return ids


def event_problems(delivered: list[dict], expected: list[dict]) -> tuple[list[str], int]:
    """Every expected change delivered, nothing else, and a repeat only under the id of the first delivery."""
    got, want = ids_by_subject(delivered), set(ids_by_subject(expected))
    lost = sorted(want - set(got))
    problems = [f"events lost: {lost[:3]}"] if lost else []
    problems += [f"unexpected events: {sorted(set(got) - want)[:3]}"] if set(got) - want else []
    problems += [f"one change under {len(ids)} ids: {s}" for s, ids in got.items() if len(ids) > 1][:3]
    return problems, len(lost)


# --- the asset sync (and the pollenation of what it listed) ------------------------------------------


def day_of_changes(base: list[dict], rng: random.Random) -> tuple[list[dict], list[dict]]:
    """A starting universe with delisted assets, then a day with every kind of change the sync handles."""
    prep = churn(base, rng, delistings=4)
    present = {a["symbol"] for a in prep.universe}
    day = churn(prep.universe, rng, listings=4, delistings=4, reactivations=2, renames=8,
                reactivate_from=[s for s in prep.delisted if s in present])
    touched = set(day.listed) | set(day.delisted) | set(day.reactivated) | set(day.renamed.values())
    updated = [a for a in day.universe if is_listed(a) and a["class"] == "us_equity" and a["symbol"] not in touched][:2]
    universe = copy.deepcopy(day.universe)
    for asset in universe:
        if asset["symbol"] in {a["symbol"] for a in updated}:
            asset["name"] = asset["name"] + " (new name)"
    return prep.universe, universe


def sync_cycle(server: ForkServer, env: dict, tap: EventTap, point: str, start: dict, reference: dict) -> Cycle:
    tables.restore(env["SIGNAL9_ASSETS_TABLE"], "assets", start["assets"])
    tables.restore(env["SIGNAL9_MARKET_DATA_TABLE"], "market_data", start["bars"])
    tap.drain()
    cycle = Cycle([point])
    cycle.problems += [p for p in [killed_at(server, SYNC_AND_POLLENATE, point, SYNC_BATCH_SIZE)] if p]
    rerun = server.run(SYNC_RERUN, batch_size=SYNC_BATCH_SIZE)
    if not rerun.succeeded:
        cycle.problems.append(f"rerun failed: {rerun.steps} {rerun.error[-500:]}")
    assets = tables.scan(env["SIGNAL9_ASSETS_TABLE"], "assets")
    bars = tables.scan(env["SIGNAL9_MARKET_DATA_TABLE"], "market_data")
    for problems, lost in (table_problems(assets, reference["assets"], "assets"),
                           table_problems(bars, reference["bars"], "market_data"),
                           event_problems(tap.drain(), reference["events"])):
        cycle.problems += problems
        cycle.lost += lost
    cycle.problems += untouched_rewritten(assets, start["assets"], reference["assets"]) + markers_left(assets)
    return cycle


def test_asset_sync_killed_at_random_writes_converges_on_rerun(bars_env, default_universe, fork_server, ledger):
    rng = random.Random(SEED)
    base = small_universe(default_universe, n=100)
    prepared, day = day_of_changes(base, rng)
    for universe in (base, prepared):
        put_universe(bars_env, universe)
        must_succeed(fork_server.run(SYNC_AND_POLLENATE), "preparing sync")
    start = {"assets": tables.scan(bars_env["SIGNAL9_ASSETS_TABLE"], "assets"),
             "bars": tables.scan(bars_env["SIGNAL9_MARKET_DATA_TABLE"], "market_data")}
    put_universe(bars_env, day)
    tap = EventTap(bars_env["SIGNAL9_EVENT_BUS"], f"crash-sync-{uuid.uuid4().hex[:8]}", WATCHED_EVENTS)
    uninterrupted = must_succeed(fork_server.run(SYNC_AND_POLLENATE, COUNT_WRITES, batch_size=SYNC_BATCH_SIZE),
                                 "uninterrupted sync")
    reference = {"assets": tables.scan(bars_env["SIGNAL9_ASSETS_TABLE"], "assets"),
                 "bars": tables.scan(bars_env["SIGNAL9_MARKET_DATA_TABLE"], "market_data"), "events": tap.drain()}
    assert not markers_left(reference["assets"]) and len(reference["events"]) == 4 + 8 + 4 + 2 + 8
    cycles = [sync_cycle(fork_server, bars_env, tap, point, start, reference)
              for point in kill_points(uninterrupted.dynamodb_writes, KILL_POINTS, rng)]
    record_and_assert(ledger, "asset sync + pollenation", uninterrupted.dynamodb_writes, cycles)


# --- ohlc_bars --------------------------------------------------------------------------------------------


def check_against_sandbox(bars: tables.Snapshot, companies: dict[str, tuple[str, str]]) -> None:
    """The uninterrupted run itself: every company-day the sandbox has a bar for, in its bucket, the manifest naming
    them.

    `companies`: asset id -> (the key the sandbox derives its bars from, asset class).
    """
    days = sorted({day for (series, day) in bars if series.startswith("#PARTITION")})
    stored: collections.Counter = collections.Counter()
    for (series, _), item in bars.items():
        if series.startswith("#"):
            continue
        decoded = decode(item["bars"])[0]
        assert decoded["timestamp"].is_unique and item["bar_count"] == len(decoded)
        assert series == f"{item['alpaca_id']}#1Day"
        stored.update((item["alpaca_id"], d)
                      for d in trading_days(decoded["timestamp"], crypto=item["asset_class"] == "crypto"))
    expected = {(i, d): n for i, (key, c) in companies.items() for d in days
                if (n := tables.sandbox_daily_bars(key, date.fromisoformat(d), crypto=c == "crypto"))}
    assert dict(stored) == expected
    for day in days:
        assert unpack_ids(bars[("#PARTITION#1Day", day)]["asset_ids"]) == {i for i, d in stored if d == day}


def bars_chain(server: ForkServer, table: str, points: list[str], start: tables.Snapshot,
               reference: tables.Snapshot) -> Cycle:
    """Kill the run at each point in turn (every run rewrites the same items), then let one finish."""
    tables.restore(table, "market_data", start)
    cycle = Cycle(points)
    cycle.problems += [p for p in (killed_at(server, BARS, point, BARS_BATCH_SIZE) for point in points) if p]
    rerun = server.run(BARS, batch_size=BARS_BATCH_SIZE)
    if not rerun.succeeded:
        cycle.problems.append(f"rerun failed: {rerun.steps} {rerun.error[-500:]}")
    problems, cycle.lost = table_problems(tables.scan(table, "market_data"), reference, "market_data")
    cycle.problems += problems
    return cycle


def chains(points: list[str], writes: int) -> list[list[str]]:
    """Pairs of kill points. A run killed after its last write (the manifest) leaves a rerun fewer writes: it goes
    second."""
    last = f"{WRITE_ANSWERED}#{writes}"
    ordered = [p for p in points if p != last] + [p for p in points if p == last]
    return [ordered[i : i + 2] for i in range(0, len(ordered), 2)]


def test_ohlc_bars_killed_at_random_writes_converges_on_rerun(bars_env, default_universe, fork_server, ledger):
    rng = random.Random(SEED + 1)
    base = small_universe(default_universe, n=100)
    put_universe(bars_env, base)
    must_succeed(fork_server.run(SYNC + BARS), "first sync and bars")
    table = bars_env["SIGNAL9_MARKET_DATA_TABLE"]
    start = tables.scan(table, "market_data")  # bars of a universe that then changes
    day = churn(base, rng, listings=8, delistings=8)
    put_universe(bars_env, day.universe)
    must_succeed(fork_server.run(SYNC), "sync of the changed universe")
    uninterrupted = must_succeed(fork_server.run(BARS, COUNT_WRITES, batch_size=BARS_BATCH_SIZE), "uninterrupted bars")
    reference = tables.scan(table, "market_data")
    # The dates are in the past: every company the table holds was listed then, today's delistings included.
    keys = tables.sandbox_keys(bars_env["SIGNAL9_SANDBOX_URL"])
    companies = {i["alpaca_id"]: i for i in tables.scan(bars_env["SIGNAL9_ASSETS_TABLE"], "assets").values()
                 if i["asset_id"].startswith("ID#")}
    check_against_sandbox(reference, {i: (keys[i], c["asset_class"]) for i, c in companies.items()})
    delisted = {i for i, c in companies.items() if c["symbol"] in day.delisted}
    assert {f"{i}#1Day" for i in delisted} <= {s for (s, _) in reference}  # their history stays and is refreshed
    cycles = [bars_chain(fork_server, table, pair, start, reference)
              for pair in chains(kill_points(uninterrupted.dynamodb_writes, KILL_POINTS, rng),
                                 uninterrupted.dynamodb_writes)]
    record_and_assert(ledger, "ohlc_bars", uninterrupted.dynamodb_writes, cycles)


def record_and_assert(ledger, pipeline: str, writes: int, cycles: list[Cycle]) -> None:
    points = sum(len(c.points) for c in cycles)
    failed = [c for c in cycles if c.problems]
    lost = sum(c.lost for c in cycles)
    outcome = ("rerun equals uninterrupted run" if not failed
               else f"{len(failed)} of {len(cycles)} reruns diverged from the uninterrupted run")
    ledger.record("crash", f"SIGKILL during {pipeline} writes ({points} points of {2 * writes})", outcome,
                  lost=lost, times=points)
    assert points >= KILL_POINTS and not failed, "\n".join(f"{c.points}: {c.problems}" for c in failed)
