"""One rate limit for every process: four processes against a sandbox that enforces 60/min."""

import os
import subprocess
import sys
import time

import pytest
import requests

from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.rate_limit import RateLimiterError, shared_limiter
from signal9_pipeline_tests.support import max_in_any_window

LIMIT = 60
RUN_S = 70


@pytest.mark.slow
def test_four_processes_share_one_limit_and_use_it(sandbox_factory, secret_for, tmp_path, stack_env):
    server = sandbox_factory(None, rate_limit_per_minute=LIMIT)
    env = {**os.environ, "ALPACA_TRADING_URL": server.url, "ALPACA_DATA_URL": server.url,
           "ALPACA_SECRET_ID": secret_for(), "ALPACA_RATE_LIMIT_PER_MINUTE": str(LIMIT),
           "SIGNAL9_RATE_LIMITER_URL": f"sqlite:///{tmp_path / 'shared-limit.sqlite'}"}
    start = time.time() + 20  # every worker has imported and is waiting by then
    end = start + RUN_S
    workers = [subprocess.Popen([sys.executable, "-m", "signal9_pipeline_tests.resources.limit_worker",
                                 str(start), str(end)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [w.communicate(timeout=RUN_S + 120) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err[-2000:] for _, err in outputs]
    stats = requests.get(f"{server.url}/_sandbox/stats", timeout=10).json()["requests"]
    assert {r["status"] for r in stats} == {200}  # the sandbox never had to refuse one
    busiest = max_in_any_window([r["t"] for r in stats])
    assert busiest <= LIMIT
    per_minute = sum(start <= r["t"] <= end for r in stats) / (RUN_S / 60)
    assert per_minute >= 0.9 * LIMIT, f"only {per_minute:.1f} requests/min served of {LIMIT} allowed"
    completed = sum(int(out.strip().split("=")[1]) for out, _ in outputs)
    assert completed >= 0.9 * LIMIT and len(stats) >= completed
    print(f"shared limit: busiest 60 s window {busiest}/{LIMIT}, "
          f"{per_minute:.1f} requests/min over {RUN_S} s, 4 processes")


def test_window_counter_counts_the_busiest_60_seconds():
    assert max_in_any_window([0, 10, 59.9, 60, 61, 200]) == 4
    assert max_in_any_window([]) == 0


def test_unreachable_redis_is_a_clear_error_not_a_silent_fallback(stack_env):
    with pytest.raises(RateLimiterError, match="127.0.0.1:9"):
        shared_limiter("redis://127.0.0.1:9/0", 200)
    with pytest.raises(RateLimiterError, match="127.0.0.1:9"):
        AlpacaResource.from_settings(rate_limiter_url="redis://127.0.0.1:9/0").list_assets()


@pytest.mark.parametrize("url", ["memcached://x", "sqlite://relative.db", "sqlite:///"])
def test_unsupported_limiter_urls_are_refused(url):
    with pytest.raises(RateLimiterError, match="sqlite:///"):
        shared_limiter(url, 200)


def test_limit_must_be_positive():
    with pytest.raises(RateLimiterError, match="at least 1"):
        shared_limiter("sqlite:////tmp/x.sqlite", 0)
