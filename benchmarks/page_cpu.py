"""Benchmark: the pipeline's CPU per 10,000-bar page, with the pages already fetched.

What one page costs from the bytes Alpaca sent to the item handed to DynamoDB: JSON
parse, `bars_page_frame`, screening (`screening.screen`), bucketing, and the merge and
Arrow encoding of each bucket (an empty table, so no stored bucket to merge). At
Algo Trader Plus's 10,000 requests/min, one run on one core keeps up with 1,000
requests/min when a page costs at most 60 ms. Pages are real sandbox answers over
HTTP, fetched once before timing; CPU is process time: the median of
several passes, and the fastest (what the code costs when nothing else on a shared machine gets in the way).
A baseline measured between the passes, the standard library's `json.loads` of the same page, shows how
slow the machine was during the run: the ratio of the two is steadier than either.

    python -m benchmarks.page_cpu [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import statistics
import time

import pandas as pd
import requests

from signal9_devstack.sandbox import start_in_thread
from signal9_pipeline.market_data.buckets import BucketWriter
from signal9_pipeline.market_data.ingest import PageStore
from signal9_pipeline.market_data.pages import bars_page_frame
from signal9_pipeline.market_data.tally import RunTally
from signal9_pipeline.resources.alpaca_clients import decode_json

KEY, SECRET = "bench-key", "bench-secret"
PASSES = 9
SHAPES = [  # (name, path, timeframe, symbols, start, end, asset class)
    ("stock 1Min, 04:00-20:00 New York", "/v2/stocks/bars", "1Min", 60, "2024-06-03T08:00:00Z",
     "2024-06-04T00:00:00Z", "us_equity"),
    ("stock 1Day, 60 sessions (the universe backfill's pages)", "/v2/stocks/bars", "1Day", 500, "2024-04-01T04:00:00Z",
     "2024-06-27T04:00:00Z", "us_equity"),
    ("stock 1Day, 5 years (pollenation's history pages)", "/v2/stocks/bars", "1Day", 40, "2021-06-01T04:00:00Z",
     "2026-06-01T04:00:00Z", "us_equity"),
    ("crypto 1Min, 10 pairs", "/v1beta3/crypto/us/bars", "1Min", 10, "2024-06-03T00:00:00Z",
     "2024-06-05T23:59:00Z", "crypto"),
]


class EncodeOnly:
    """A table that holds nothing and accepts every put: the writer's merge and encoding, without DynamoDB."""

    def market_data_table_name(self) -> str:
        return "none"

    def get_items(self, table, keys, projection=None):
        return []

    def put_if(self, table, item, condition, names, values=None) -> bool:
        return True


def fetch_pages(server, path: str, timeframe: str, symbols: list[str], start: str, end: str) -> list[bytes]:
    pages, token = [], None
    while len(pages) < 3:
        params = {"symbols": ",".join(symbols), "timeframe": timeframe, "start": start, "end": end, "limit": 10_000,
                  **({"feed": "sip"} if "stocks" in path else {}), **({"page_token": token} if token else {})}
        answer = requests.get(f"{server.url}{path}", params=params, timeout=60,
                              headers={"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET})
        answer.raise_for_status()
        pages.append(answer.content)
        token = answer.json()["next_page_token"]
        if not token:
            break
    return pages


def process(page: bytes, path: str, timeframe: str, asset_class: str, days: set[str]) -> int:
    """One page from its bytes to the items handed to the table; how many buckets (items) it made."""
    frame, _ = bars_page_frame(decode_json(page), path)  # as the gateway decodes every answer
    tally = RunTally()
    writer = BucketWriter(EncodeOnly(), tally, {"timeframe": timeframe, "asset_class": asset_class, "adjustment": "raw",
                                                "feed": "sip", "ingested_at": "now"}, crypto=asset_class == "crypto",
                          threads=1)
    try:
        PageStore(timeframe, asset_class, days, tally, writer)(frame, {s: s for s in frame["symbol"].unique()})
    finally:
        writer.close()
    return tally.items


def _bars_in(page: bytes) -> int:
    return sum(len(bars) for bars in json.loads(page)["bars"].values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile of each shape")
    args = parser.parse_args()
    server = start_in_thread(api_key=KEY, secret_key=SECRET, rate_limit_per_minute=1_000_000, plan="paid")
    universe = server.state.universe
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          "command: python -m benchmarks.page_cpu")
    print("\n| full 10,000-bar page | buckets per page | CPU per page (ms), median | fastest pass (ms) | "
          "pages/min on one core | baseline: stdlib json.loads of the page (ms), median | page / baseline |")
    print("|---|---|---|---|---|---|---|")
    for name, path, timeframe, count, start, end, asset_class in SHAPES:
        symbols = sorted(a["symbol"] for a in universe if a["class"] == asset_class and a["status"] == "active")[:count]
        pages = [p for p in fetch_pages(server, path, timeframe, symbols, start, end) if _bars_in(p) == 10_000]
        days = {d.strftime("%Y-%m-%d") for d in pd.date_range(start[:10], end[:10])}
        costs, baseline, buckets = [], [], 0
        for _ in range(PASSES):
            for page in pages:  # the baseline runs between the passes, so both see the same neighbours on the machine
                started = time.process_time()
                json.loads(page)
                baseline.append(time.process_time() - started)
                started = time.process_time()
                buckets = process(page, path, timeframe, asset_class, days)
                costs.append(time.process_time() - started)
        per_page, reference = statistics.median(costs) * 1000, statistics.median(baseline) * 1000
        print(f"| {name} | {buckets:,} | {per_page:.1f} | {min(costs) * 1000:.1f} | {60_000 / per_page:,.0f} | "
              f"{reference:.1f} | {per_page / reference:.2f} |")
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(process, pages[0], path, timeframe, asset_class, days)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(18)
    server.shutdown()


if __name__ == "__main__":
    main()
