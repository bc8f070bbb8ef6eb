"""Benchmark: the figures behind docs/CAPACITY.md - what the shared limiter and one stored bucket cost.

1. The limiter's ceiling: 1, 4 and 8 processes take tokens as fast as they can from one shared
   limiter (SQLite with a file lock, and Redis), with a limit no one reaches. Reports tokens/s and
   the 50th/99th percentile time to take one; Alpaca's 10,000/min plan needs 167/s.
2. One stored bucket item per timeframe: a real ohlc_bars run per timeframe for one trading day of
   200 listed equities and 10 crypto pairs on the local stack; the items are read back and
   sized as DynamoDB sizes them (attribute names plus values), giving write units per item.
3. One run's own ceiling: a 1Min day of 2,000 listed equities with no rate limit in the way;
   the Alpaca requests per minute one run sustains, from the sandbox's stats.

    python -m benchmarks.capacity
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import exchange_calendars as xcals

from signal9_pipeline.local import stack
from signal9_pipeline.market_data.days import TIMEFRAMES, bucket_start
from signal9_pipeline.resources.rate_limit import shared_limiter
from signal9_pipeline_tests.deploy.services import start_redis

SECONDS = 10
UNREACHABLE_LIMIT = 10**9


def _take_tokens(url: str, seconds: float, queue: multiprocessing.Queue) -> None:
    limiter = shared_limiter(url, UNREACHABLE_LIMIT)
    latencies, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        limiter.try_acquire("alpaca", blocking=True)
        latencies.append(time.perf_counter() - started)
    queue.put(latencies)


def limiter_ceiling(url: str, processes: int) -> dict:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_take_tokens, args=(url, SECONDS, queue)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    latencies = [lat for _ in workers for lat in queue.get()]
    for worker in workers:
        worker.join()
    latencies.sort()
    return {"processes": processes, "tokens_per_s": round(len(latencies) / SECONDS),
            "p50_ms": round(statistics.median(latencies) * 1000, 2), "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2)}


def _item_bytes(item: dict) -> int:
    total = 0
    for name, value in item.items():
        total += len(name.encode())
        if isinstance(value, (bytes, bytearray)):
            total += len(value)
        elif isinstance(value, str):
            total += len(value.encode())
        else:
            total += len(json.dumps(value, default=str))
    return total


def item_sizes(env: dict[str, str]) -> list[dict]:
    from signal9_pipeline.resources.dynamodb import DynamoDBResource
    from signal9_pipeline_tests.support import materialize_bars, put_universe, run_sync, small_universe

    os.environ.update(env)
    from signal9_pipeline.sandbox.universe import build_universe

    put_universe(env, small_universe(build_universe(0), n=200))
    assert run_sync().success
    day = xcals.get_calendar("XNYS").date_to_session(date.today() - timedelta(days=7), direction="previous").strftime("%Y-%m-%d")
    rows = []
    dynamodb = DynamoDBResource.from_settings()
    for timeframe in TIMEFRAMES:
        assert materialize_bars(timeframe, day, day, watchlist="all").success
        bucket = bucket_start(date.fromisoformat(day), timeframe).isoformat()  # the item holding that day's bars
        items = [i for i in dynamodb.scan(dynamodb.market_data_table_name()) if "bar_count" in i and i["series"].endswith(f"#{timeframe}") and i["day"] == bucket]
        sizes = [_item_bytes(i) for i in items]
        bars = [int(i["bar_count"]) for i in items]
        rows.append({"timeframe": timeframe, "items": len(items), "bars_per_item": round(statistics.mean(bars), 1),
                     "mean_bytes": round(statistics.mean(sizes)), "max_bytes": max(sizes),
                     "mean_wcu": round(statistics.mean(math.ceil(s / 1024) for s in sizes), 2)})
    return rows


def one_run_ceiling(env: dict[str, str]) -> dict:
    import requests

    from signal9_pipeline.sandbox.universe import build_universe
    from signal9_pipeline_tests.support import materialize_bars, put_universe, run_sync, small_universe

    put_universe(env, small_universe(build_universe(0), n=2000))
    assert run_sync().success
    day = xcals.get_calendar("XNYS").date_to_session(date.today() - timedelta(days=14), direction="previous").strftime("%Y-%m-%d")
    requests.post(f"{env['SIGNAL9_SANDBOX_URL']}/_sandbox/reset", timeout=10).raise_for_status()
    started = time.monotonic()
    assert materialize_bars("1Min", day, day, watchlist="all").success
    wall = time.monotonic() - started
    stamps = [r["t"] for r in requests.get(f"{env['SIGNAL9_SANDBOX_URL']}/_sandbox/stats", timeout=10).json()["requests"]
              if "/bars" in r["path"]]
    fetching = max(stamps) - min(stamps)
    return {"requests": len(stamps), "fetch_s": round(fetching, 1), "run_wall_s": round(wall, 1),
            "requests_per_min": round(len(stamps) / fetching * 60)}


def main() -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    redis_service = start_redis()
    sqlite_url = f"sqlite:///{tempfile.mkdtemp(prefix='signal9-bench-limiter-')}/limit.sqlite"
    try:
        print("\n| limiter | processes | tokens/s | p50 ms | p99 ms |\n|---|---|---|---|---|")
        for name, url in (("SQLite + file lock", sqlite_url), ("Redis", f"redis://127.0.0.1:{redis_service.port}/0")):
            for processes in (1, 4, 8):
                row = limiter_ceiling(url, processes)
                print(f"| {name} | {processes} | {row['tokens_per_s']} | {row['p50_ms']} | {row['p99_ms']} |", flush=True)
    finally:
        redis_service.stop()

    home = Path(tempfile.mkdtemp(prefix="signal9-bench-capacity-"))
    env = stack.up(home, rate_limit_per_minute=100_000)
    try:
        rows = item_sizes(env)
        ceiling = one_run_ceiling(env)
    finally:
        stack.down(home)
    print("\n| timeframe | items | bars/item | mean item bytes | max item bytes | mean WCU/item |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['timeframe']} | {r['items']} | {r['bars_per_item']} | {r['mean_bytes']} | {r['max_bytes']} | {r['mean_wcu']} |")
    print(f"\none run, 1Min day of 2,000 equities, no limit: {ceiling['requests']} requests in {ceiling['fetch_s']} s of fetching "
          f"= {ceiling['requests_per_min']} requests/min; the run took {ceiling['run_wall_s']} s")


if __name__ == "__main__":
    main()
