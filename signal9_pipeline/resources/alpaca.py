"""Alpaca's trading and market-data APIs as the pipeline uses them: `AlpacaResource`.

Built on alpaca-py's clients (`url_override` points them at the sandbox; raw JSON, so a value Alpaca
adds to an enum never breaks a sync); every request goes through the gateway (`alpaca_gateway`):
one shared rate limit, timeouts, retries, metrics, logs, typed errors (`alpaca_errors`).

Each setting field defaults to its registered default (`settings.REGISTRY`);
`definitions.py` sets every one with `dg.EnvVar`, and scripts and notebooks
build the resource from their environment with `AlpacaResource.from_settings()`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime, timezone
from typing import Any, ClassVar

import dagster as dg
import requests

from signal9_pipeline import settings
from signal9_pipeline.resources import run_scope
from signal9_pipeline.resources.alpaca_errors import (
    AlpacaAuthError,
    AlpacaConfigError,
    AlpacaNotFoundError,
    AlpacaResponseError,
)
from signal9_pipeline.resources.alpaca_gateway import Gateway, GatewayConfig, gateway_for
from signal9_pipeline.resources.configured import FromSettings

# Stock feeds the pipeline can store (Alpaca's DataFeed values whose bars lie within 04:00-20:00 New York;
# the overnight feeds `boats` and `overnight` trade 20:00-04:00 and are not ingested). `iex` is what every
# plan may query, and Alpaca's own default on the free plan.
FEEDS = ("iex", "sip", "delayed_sip", "otc")
DEFAULT_FEED = "iex"
PAGE_LIMIT = 10_000
# Alpaca's asset classes that have a bars endpoint: the client kind and the path of each.
BARS_ENDPOINTS = {"us_equity": ("stocks", "/stocks/bars"), "crypto": ("crypto", "/crypto/us/bars")}


class AlpacaResource(FromSettings, dg.ConfigurableResource):
    """Alpaca's trading and market-data APIs for the pipeline, shared limit and all."""

    SETTINGS: ClassVar[dict[str, str]] = {
        "trading_url": "ALPACA_TRADING_URL", "data_url": "ALPACA_DATA_URL", "paper": "ALPACA_PAPER",
        "credentials_secret_id": "ALPACA_SECRET_ID", "rate_limit_per_minute": "ALPACA_RATE_LIMIT_PER_MINUTE",
        "rate_limiter_url": "SIGNAL9_RATE_LIMITER_URL", "request_timeout_s": "ALPACA_REQUEST_TIMEOUT_S",
        "max_attempts": "ALPACA_MAX_ATTEMPTS", "metrics_namespace": "SIGNAL9_METRICS_NAMESPACE", "feed": "ALPACA_FEED",
    }

    trading_url: str = ""  # empty: Alpaca's paper or live host, as `paper` says
    data_url: str = ""  # empty: https://data.alpaca.markets
    paper: bool = settings.default("ALPACA_PAPER")
    credentials_secret_id: str = settings.default("ALPACA_SECRET_ID")
    credentials_ttl_s: float = 300.0
    rate_limit_per_minute: int = settings.default("ALPACA_RATE_LIMIT_PER_MINUTE")
    rate_limiter_url: str = settings.default("SIGNAL9_RATE_LIMITER_URL")
    request_timeout_s: int = settings.default("ALPACA_REQUEST_TIMEOUT_S")
    max_attempts: int = settings.default("ALPACA_MAX_ATTEMPTS")
    circuit_failure_threshold: int = 10
    circuit_reset_s: float = 30.0
    metrics_namespace: str = settings.default("SIGNAL9_METRICS_NAMESPACE")
    feed: str = settings.default("ALPACA_FEED")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run_scope.enter_from(context)

    def gateway(self) -> Gateway:
        return gateway_for(GatewayConfig(
            trading_url=self.trading_url or None,
            data_url=self.data_url or None,
            paper=self.paper,
            secret_id=self.credentials_secret_id,
            credentials_ttl_s=self.credentials_ttl_s,
            rate_limit_per_minute=self.rate_limit_per_minute,
            rate_limiter_url=self.rate_limiter_url,
            request_timeout_s=float(self.request_timeout_s),
            max_attempts=max(1, self.max_attempts),
            circuit_failure_threshold=self.circuit_failure_threshold,
            circuit_reset_s=self.circuit_reset_s,
            metrics_namespace=self.metrics_namespace,
        ))

    def data_feed(self) -> str:
        """The stock feed sent on every stock bars request and recorded on every stored item."""
        feed = self.feed.strip().lower()
        if feed not in FEEDS:
            raise AlpacaConfigError(f"Alpaca feed {feed!r} (ALPACA_FEED) is not one of {', '.join(FEEDS)}; "
                             f"use {DEFAULT_FEED} (every plan) or sip (Algo Trader Plus)")
        return feed

    @property
    def requests_sent(self) -> int:
        """HTTP requests this process sent through this configuration (retries and pages included)."""
        return self.gateway().requests_sent

    def list_assets(self, status: str | None = None, asset_class: str | None = None) -> list[dict]:
        """Every asset Alpaca lists (optionally filtered): one request, the API's dicts with every field kept."""
        params = {k: v for k, v in (("status", status), ("asset_class", asset_class)) if v}
        assets = self.gateway().get("trading", "/assets", params)
        if not isinstance(assets, list) or not all(isinstance(a, dict) for a in assets):
            raise AlpacaResponseError(f"/v2/assets answered {type(assets).__name__}, expected a JSON array of objects")
        return assets

    def get_asset(self, symbol: str) -> dict | None:
        """One asset by symbol (`GET /v2/assets/{symbol}`, crypto pairs as BTCUSD); None when Alpaca knows none."""
        try:
            asset = self.gateway().get("trading", f"/assets/{requests.utils.quote(symbol.replace('/', ''), safe='')}")
        except AlpacaNotFoundError:
            return None
        if not isinstance(asset, dict):
            raise AlpacaResponseError(f"/v2/assets/{symbol} answered {type(asset).__name__}, expected a JSON object")
        return asset

    def validate_credentials(self) -> bool:
        """True when Alpaca accepts the secret's keys (GET /v2/account), False when it refuses them."""
        try:
            account = self.gateway().get("trading", "/account")
        except AlpacaAuthError:
            return False
        return isinstance(account, dict) and "id" in account

    def iter_corporate_actions(self, start: date, end: date, *, types: Sequence[str] = ()) -> Iterator[dict]:
        """Every page of `/v1/corporate-actions` for actions processed from start to end (inclusive), all symbols.

        One unfiltered request pages through every symbol's actions (up to 1,000 per page), far fewer
        requests than asking symbol by symbol; the caller keeps the symbols it stores.
        """
        gateway, token = self.gateway(), None
        params = {"start": start.isoformat(), "end": end.isoformat(), "limit": 1000, "sort": "asc",
                  **({"types": ",".join(types)} if types else {})}
        while True:
            page = gateway.get("corporate_actions", "/corporate-actions",
                               {**params, **({"page_token": token} if token else {})})
            if not isinstance(page, dict) or not isinstance(page.get("corporate_actions", {}), dict):
                raise AlpacaResponseError("/v1/corporate-actions answered "
                                          f"{type(page).__name__}, expected an object with a corporate_actions object")
            yield page
            token = page.get("next_page_token")
            if not token:
                return

    def iter_bars(self, symbols: Sequence[str], timeframe: str, start: datetime, end: datetime, *,
                  asset_class: str, adjustment: str = "raw", feed: str | None = None,
                  asof: str | None = None) -> Iterator[dict]:
        """Every page (up to 10,000 bars across symbols) of one asset class's bars endpoint, as Alpaca's JSON.

        Stocks go to /v2/stocks/bars with this resource's feed (or `feed`), crypto to /v1beta3/crypto/us/bars:
        which one is the asset's class (from the asset list), never the spelling of its symbol. `asof`
        (YYYY-MM-DD, stocks only) is the date the symbols are meant as of: Alpaca answers, under each symbol, the
        whole history of the company that held it on that date (its default, today, answers today's holders).
        `market_data.pages.bar_frames` reads each page into a frame before the next is asked for.
        """
        kind, path = bars_endpoint(asset_class)
        symbols = sorted(set(symbols))
        if not symbols:
            return
        params = {"timeframe": timeframe, "start": _rfc3339(start), "end": _rfc3339(end), "limit": PAGE_LIMIT,
                  "sort": "asc"}
        if kind == "stocks":
            params |= {"adjustment": adjustment, "feed": feed or self.data_feed(), **({"asof": asof} if asof else {})}
        gateway, token = self.gateway(), None
        while True:
            page = gateway.get(kind, path, {**params, "symbols": ",".join(symbols),
                                            **({"page_token": token} if token else {})})
            yield page
            token = _next_page_token(page, path)
            if not token:
                return


def bars_endpoint(asset_class: str) -> tuple[str, str]:
    """The client kind and the path (after the version) of `asset_class`'s bars endpoint."""
    if asset_class not in BARS_ENDPOINTS:
        raise AlpacaConfigError(f"asset class {asset_class!r} has no bars endpoint here; "
                                f"use one of {', '.join(BARS_ENDPOINTS)}")
    return BARS_ENDPOINTS[asset_class]


def _next_page_token(page: Any, path: str) -> str | None:
    """The token of the page after `page` (read after its bars, whose envelope `bar_frames` checks first)."""
    token = page.get("next_page_token") if isinstance(page, dict) else None
    if not isinstance(page, dict) or not (token is None or isinstance(token, str)):
        raise AlpacaResponseError(f"{path} answered a page without a readable next_page_token")
    return token or None


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
