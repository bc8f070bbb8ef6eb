"""Every setting the pipeline reads, by environment variable, with its local default.

Configuration comes only from the environment (README lists each variable), so
the same code runs against the local stack, CI and AWS. Unset Alpaca URLs mean
Alpaca's real hosts; unset AWS endpoints mean real AWS.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_int(name: str, default: int) -> int:
    raw = env_str(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer") from None


def env_bool(name: str, default: bool) -> bool:
    raw = env_str(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"environment variable {name}={raw!r} must be true or false")


@dataclass(frozen=True)
class Settings:
    assets_table: str
    market_data_table: str
    event_bus: str
    alpaca_secret_id: str
    alpaca_trading_url: str | None
    alpaca_data_url: str | None
    alpaca_paper: bool
    alpaca_feed: str
    rate_limit_per_minute: int
    rate_limiter_url: str
    request_timeout_s: int
    max_attempts: int
    metrics_namespace: str

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            assets_table=env_str("SIGNAL9_ASSETS_TABLE", "signal9-assets"),
            market_data_table=env_str("SIGNAL9_MARKET_DATA_TABLE", "signal9-market-data"),
            event_bus=env_str("SIGNAL9_EVENT_BUS", "signal9-events"),
            alpaca_secret_id=env_str("ALPACA_SECRET_ID", "signal9/alpaca-credentials"),
            alpaca_trading_url=env_str("ALPACA_TRADING_URL"),
            alpaca_data_url=env_str("ALPACA_DATA_URL"),
            alpaca_paper=env_bool("ALPACA_PAPER", True),
            alpaca_feed=env_str("ALPACA_FEED", "iex"),
            rate_limit_per_minute=env_int("ALPACA_RATE_LIMIT_PER_MINUTE", 200),
            rate_limiter_url=env_str(
                "SIGNAL9_RATE_LIMITER_URL", f"sqlite:///{os.path.join(tempfile.gettempdir(), 'signal9-alpaca-rate-limit.sqlite')}"
            ),
            request_timeout_s=env_int("ALPACA_REQUEST_TIMEOUT_S", 30),
            max_attempts=env_int("ALPACA_MAX_ATTEMPTS", 5),
            metrics_namespace=env_str("SIGNAL9_METRICS_NAMESPACE", "Signal9/Pipeline"),
        )
