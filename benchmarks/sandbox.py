"""Benchmark: how fast the Alpaca sandbox serves the default universe and full bar pages.

Targets (issue: foundation): the full default universe from /v2/assets in under 2 s, a 10,000-bar
page in under 1 s, on a 2-core machine. Each figure is the median of several requests, measured
from the client over real HTTP on loopback; the first (cold) request is reported separately.
Stock bars cover 04:00-20:00 New York; requests that name no feed get SIP (the windows are older
than 15 minutes), the iex row the thinner IEX feed.

    python -m benchmarks.sandbox
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import requests

from signal9_devstack.sandbox import start_in_thread

KEY, SECRET = "bench-key", "bench-secret"
REPEAT = 5


def timed(session: requests.Session, url: str, **params) -> tuple[float, int]:
    started = time.perf_counter()
    answer = session.get(url, params=params, headers={"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET},
                         timeout=60)
    answer.raise_for_status()
    body = answer.json()
    size = len(body) if isinstance(body, list) else sum(len(v) for v in body["bars"].values())
    return time.perf_counter() - started, size


def main() -> None:
    server = start_in_thread(api_key=KEY, secret_key=SECRET, rate_limit_per_minute=1_000_000)
    session = requests.Session()
    symbols = sorted(a["symbol"] for a in server.state.universe
                     if a["status"] == "active" and a["class"] == "us_equity")
    crypto = sorted(a["symbol"] for a in server.state.universe if a["class"] == "crypto")
    cases = [
        ("/v2/assets (all 32,212 assets)", "/v2/assets", {}),
        ("1Min page, 500 symbols, 1 day", "/v2/stocks/bars",
         {"symbols": ",".join(symbols[:500]), "timeframe": "1Min", "start": "2024-06-03", "end": "2024-06-04",
          "limit": 10000}),
        ("1Day page, 500 symbols, 60 days", "/v2/stocks/bars",
         {"symbols": ",".join(symbols[:500]), "timeframe": "1Day", "start": "2024-03-01", "end": "2024-06-01",
          "limit": 10000}),
        ("1Day page, 500 symbols, 60 days, iex", "/v2/stocks/bars",
         {"symbols": ",".join(symbols[:500]), "timeframe": "1Day", "start": "2024-03-01", "end": "2024-06-01",
          "limit": 10000, "feed": "iex"}),
        ("1Hour page, 500 symbols, 10 days", "/v2/stocks/bars",
         {"symbols": ",".join(symbols[:500]), "timeframe": "1Hour", "start": "2024-06-03", "end": "2024-06-14",
          "limit": 10000}),
        ("1Min page, 20 crypto pairs, 1 day", "/v1beta3/crypto/us/bars",
         {"symbols": ",".join(crypto[:20]), "timeframe": "1Min", "start": "2024-06-03", "end": "2024-06-04",
          "limit": 10000}),
    ]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          "command: python -m benchmarks.sandbox")
    print("| request | items | cold (s) | median of 5 (s) |")
    print("|---|---|---|---|")
    try:
        for name, path, params in cases:
            cold, size = timed(session, server.url + path, **params)
            warm = statistics.median(timed(session, server.url + path, **params)[0] for _ in range(REPEAT))
            print(f"| {name} | {size} | {cold:.3f} | {warm:.3f} |")
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
