"""Benchmark: Alpaca requests of a 60-day 1Day universe backfill, the symbol-keyed release against this one, one run.

Every stock request of this release names each company by the symbol it held as of a date and sends that date as
`asof`; companies whose ticker passed to another company before the run's last date are asked in a group of
their own. This measures what that costs where it matters, a universe backfill (12,062 listed companies, 60
trading days), on the same local stack and sandbox at Alpaca's 200 requests/min:
1. the symbol-keyed release (a worktree of commit 94cb54c), after its first sync;
2. this release, after its first sync;
3. this release again (the same backfill into the same tables) after a day of changes: 20 renames, 20 delistings,
   and 5 reused tickers (a company delisted and a new company listed under its symbol the same day).
Each sync and backfill runs in a fresh process; requests are counted from the sandbox's own log.

    git worktree add /tmp/legacy 94cb54c
    python -m benchmarks.identity_requests --legacy /tmp/legacy
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import random
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import requests

from benchmarks.ohlc_bars import LIMIT, run
from signal9_devstack.local import stack
from signal9_devstack.local.provision import ASSETS_INDEXES, TABLE_KEYS, ensure_table
from signal9_devstack.sandbox.churn import churn
from signal9_devstack.sandbox.universe import build_universe
from signal9_pipeline.resources import metrics

FIRST, LAST = "2024-03-01", "2024-05-28"  # 60 trading days
SYNC = ("import dagster as dg\nfrom signal9_pipeline.definitions import defs\n"
        "config = {'ops': {'validated_assets': {'config': {'allow_mass_delisting': True}}}}\n"
        "assert defs.resolve_job_def('asset_sync_job').execute_in_process(run_config=config).success\n")


def fresh_tables(env: dict[str, str]) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    tables = {"SIGNAL9_ASSETS_TABLE": f"bench-assets-{suffix}", "SIGNAL9_MARKET_DATA_TABLE": f"bench-bars-{suffix}"}
    ensure_table(tables["SIGNAL9_ASSETS_TABLE"], *TABLE_KEYS["assets"], indexes=ASSETS_INDEXES)
    ensure_table(tables["SIGNAL9_MARKET_DATA_TABLE"], *TABLE_KEYS["market_data"])
    return {**env, **tables}


def sync(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-c", SYNC], env={**os.environ, **env}, check=True, capture_output=True,
                   timeout=900)


def synced_default_universe(env: dict[str, str]) -> dict[str, str]:
    """The sandbox serving the default universe, fresh tables, one sync into them: the tables' settings."""
    requests.put(f"{env['SIGNAL9_SANDBOX_URL']}/_sandbox/universe", json=build_universe(0),
                 timeout=120).raise_for_status()
    tables = fresh_tables(env)
    sync(tables)
    return tables


def day_of_changes(universe: list[dict]) -> list[dict]:
    """20 renames, 20 delistings, and 5 tickers passed from a delisted company to a new one (a new id)."""
    changed = churn(universe, random.Random(7), renames=20, delistings=20).universe
    listed = [a for a in changed if a["class"] == "us_equity" and a["status"] == "active" and a["tradable"]]
    rng = random.Random(8)
    for old in rng.sample(listed, 5):
        newcomer = copy.deepcopy(old) | {"id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                                         "name": "Newcomer Inc."}
        old.update(status="inactive", tradable=False)
        changed.append(newcomer)
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--legacy", required=True, help="a worktree of the symbol-keyed release (commit 94cb54c)")
    legacy = str(Path(parser.parse_args().legacy).resolve())
    home = Path(tempfile.mkdtemp(prefix="signal9-bench-identity-"))
    env = stack.up(home, rate_limit_per_minute=LIMIT)
    rows = []
    try:
        os.environ.update(env)
        universe = build_universe(0)
        for name, path in (("symbol-keyed release (94cb54c), after its first sync", legacy),
                           ("this release, after its first sync", None)):
            requests.put(f"{env['SIGNAL9_SANDBOX_URL']}/_sandbox/universe", json=universe,
                         timeout=120).raise_for_status()
            release = fresh_tables(env) | ({"PYTHONPATH": path} if path else {})
            sync(release)
            rows.append((name, run(release, home, "1Day", FIRST, LAST, "")))
        requests.put(f"{env['SIGNAL9_SANDBOX_URL']}/_sandbox/universe", json=day_of_changes(universe),
                     timeout=120).raise_for_status()
        sync(release)
        rows.append(("this release, again after 20 renames, 20 delistings, 5 reused tickers",
                     run(release, home, "1Day", FIRST, LAST, "")))
    finally:
        metrics.flush()
        stack.down(home)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; sandbox and "
          f"limiter at {LIMIT} requests/min; command: python -m benchmarks.identity_requests --legacy WORKTREE")
    print("| 1Day universe backfill, 60 trading days | bars | requests | bars/request | wall (s) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for name, f in rows:
        print(f"| {name} | {f['bars_written']} | {f['requests_used']} | {f['bars_per_request']} | {f['wall_s']} | "
              f"{f['peak_rss_mb']} |")
    base = rows[0][1]["requests_used"]
    changes = ", ".join(f"{figures['requests_used'] / base - 1:+.1%}" for _, figures in rows[1:])
    print(f"\nrequests against the symbol-keyed release: {changes}")


if __name__ == "__main__":
    main()
