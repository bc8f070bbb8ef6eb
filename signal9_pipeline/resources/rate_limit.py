"""One Alpaca rate limit shared by every process and run that uses the account's key.

Alpaca counts requests per account in a sliding 60 s window. pyrate-limiter's
sliding-window log keeps the timestamps of the requests sent: in SQLite (with
a file lock) when every run is on one host, in Redis when runs are spread over
several hosts. A token is taken before every HTTP request, each page included.
"""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import urlsplit

from pyrate_limiter import Limiter, Rate, RedisBucket, SQLiteBucket

# The window is kept a little longer than Alpaca's 60 s: a request leaves here
# some milliseconds before Alpaca counts it, and those delays vary, so a window
# of exactly 60 s on this side could still put one request too many into one of
# Alpaca's windows.
WINDOW_MS = 61_000
BUCKET_NAME = "alpaca_requests"


class RateLimiterError(RuntimeError):
    """The shared limiter is configured but unusable; never silently replaced by a per-process one."""


_limiters: dict[tuple[str, int], Limiter] = {}
_lock = threading.Lock()


def shared_limiter(url: str, per_minute: int) -> Limiter:
    """The process's limiter for `url` (sqlite:///PATH or redis://HOST:PORT/DB) at `per_minute` requests."""
    if per_minute < 1:
        raise RateLimiterError(f"rate_limit_per_minute must be at least 1, got {per_minute}")
    key = (url, per_minute)
    with _lock:
        if key not in _limiters:
            _limiters[key] = Limiter(_bucket(url, [Rate(per_minute, WINDOW_MS)]), buffer_ms=20)
        return _limiters[key]


def _bucket(url: str, rates: list[Rate]):
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise RateLimiterError(f"rate limiter URL {url!r}: use sqlite:///ABSOLUTE/PATH")
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            return SQLiteBucket.init_from_file(rates, table=BUCKET_NAME, db_path=path, create_new_table=True,
                                               use_file_lock=True)
        except Exception as exc:  # sqlite3/OSError/filelock errors all mean the same to the operator
            raise RateLimiterError(f"cannot open the rate limiter database {path}: {exc}") from exc
    if parts.scheme in ("redis", "rediss"):
        import redis

        try:
            client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
            client.ping()
            return RedisBucket.init(rates, client, bucket_key=f"signal9:{BUCKET_NAME}")
        except redis.RedisError as exc:
            raise RateLimiterError(f"the shared rate limiter at {parts.hostname}:{parts.port or 6379} is "
                                   f"unreachable ({type(exc).__name__}); runs wait for it rather than exceed "
                                   "Alpaca's limit") from exc
    raise RateLimiterError(f"rate limiter URL {url!r}: use sqlite:///PATH (one host) or redis://HOST:PORT/DB "
                           "(several hosts)")
