"""Alpaca access for the whole pipeline: credentials, one shared rate limit, timeouts, retries, metrics, logs.

Built on alpaca-py's clients (`url_override` points them at the sandbox; raw
JSON, so a value Alpaca adds to an enum never breaks a sync). Every HTTP
request goes through `_Gateway.send`: it waits for the server's quota when
Alpaca said it is spent, takes a token from the shared limiter, applies the
timeout, and logs and measures the call. `_Gateway.get` wraps each call in
tenacity retries with a circuit breaker and turns failures into the typed
errors below, so a failed run says which one happened.

Each setting field defaults to its registered default (`settings.REGISTRY`);
`definitions.py` sets every one with `dg.EnvVar`, and scripts and notebooks
build the resource from their environment with `AlpacaResource.from_settings()`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import operator
import random
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, ClassVar

import dagster as dg
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pybreaker
import requests
import tenacity
from alpaca.common.exceptions import APIError
from alpaca.common.rest import RESTClient
from alpaca.data.historical import CryptoHistoricalDataClient, StockHistoricalDataClient
from alpaca.data.historical.corporate_actions import CorporateActionsClient
from alpaca.trading.client import TradingClient
from botocore.exceptions import BotoCoreError, ClientError
from dagster_aws.secretsmanager import SecretsManagerResource

from signal9_pipeline import logs, redaction, retry, settings
from signal9_pipeline.credentials import AlpacaCredentials
from signal9_pipeline.market_data.days import ASSET_CLASSES, CRYPTO
from signal9_pipeline.market_data.screening import FAULT
from signal9_pipeline.market_data.timeframes import TIMEFRAMES
from signal9_pipeline.resources import run_scope
from signal9_pipeline.resources.configured import FromSettings
from signal9_pipeline.resources.metrics import MetricsPublisher, publisher_for
from signal9_pipeline.resources.rate_limit import RateLimiterError, shared_limiter

redaction.install()
logs.install()

# Stock feeds the pipeline can store (Alpaca's DataFeed values whose bars lie within 04:00-20:00 New York;
# the overnight feeds `boats` and `overnight` trade 20:00-04:00 and are not ingested). `iex` is what every
# plan may query, and Alpaca's own default on the free plan.
FEEDS = ("iex", "sip", "delayed_sip", "otc")
DEFAULT_FEED = "iex"
# Alpaca's refusals of recent data on a plan that does not cover it: today's wording (market-data FAQ, code 42210000)
# and the older one (2021-2022, alpaca-trade-api-python issue 551), both in the contract corpus.
RECENT_DATA_REFUSED = ("subscription does not permit querying recent sip data",
                       "subscription does not permit querying data from the past 15 minutes")
BAR_COLUMNS = ["symbol", "timestamp", "open", "high", "low", "close", "volume", "trade_count", "vwap"]
PAGE_LIMIT = 10_000
MAX_RATE_LIMIT_WAIT_S = 65.0
log = logging.getLogger("signal9.alpaca")


# --- typed errors --------------------------------------------------------------------------------
class AlpacaError(Exception):
    """Base of every typed Alpaca access failure."""


class CredentialsError(AlpacaError):
    """The Alpaca credentials secret is missing, unreadable or malformed (the message never holds its value)."""


class AlpacaAuthError(AlpacaError):
    """Alpaca refused the credentials (401/403)."""


class AlpacaRateLimitError(AlpacaError):
    """Alpaca answered 429 on every attempt."""

    def __init__(self, message: str, reset_at: float | None = None, quota_spent: bool = True):
        super().__init__(message)
        self.reset_at = reset_at
        self.quota_spent = quota_spent  # the server said no quota remains until reset_at


class AlpacaTimeoutError(AlpacaError):
    """A request got no complete answer within request_timeout_s on every attempt."""


class AlpacaUnavailableError(AlpacaError):
    """Alpaca answered 5xx or could not be reached, on every attempt, or the circuit breaker is open."""


class AlpacaResponseError(AlpacaError):
    """Alpaca answered something that is not the documented shape (malformed JSON, missing fields)."""


class AlpacaRequestError(AlpacaError):
    """Alpaca rejected the request itself (4xx other than auth and rate limit); retrying cannot help."""


class AlpacaNotFoundError(AlpacaRequestError):
    """Alpaca has no such thing (404), e.g. an asset symbol it does not know."""


class AlpacaConfigError(AlpacaError, ValueError):
    """A setting of the Alpaca resource names something Alpaca or the pipeline does not support."""


class AlpacaSubscriptionError(AlpacaRequestError):
    """The account's market-data subscription does not cover the feed and window asked for (the credentials are fine)."""


class RunTimeBudgetExceeded(AlpacaError):
    """The run used up its time budget (run tag signal9/time_budget_s); it stops instead of running on."""


RETRYABLE = (AlpacaRateLimitError, AlpacaTimeoutError, AlpacaUnavailableError, AlpacaResponseError)
# Failures a step retry cannot fix: the run fails at once, naming the error.
PERMANENT = (CredentialsError, AlpacaAuthError, AlpacaRequestError, RateLimiterError, RunTimeBudgetExceeded,
             AlpacaConfigError)
# Outages the access layer has already retried with backoff (ALPACA_MAX_ATTEMPTS): step retries on top would
# multiply the attempts and turn a persistent outage into minutes of waiting before the run says what is wrong.
EXHAUSTED = (AlpacaUnavailableError, AlpacaTimeoutError)


@contextlib.contextmanager
def fail_without_step_retries() -> Iterator[None]:
    """Inside a step: a permanent access error, or an outage the request retries did not outlast, fails the
    step at once (no step retry) with a Dagster failure that names it."""
    try:
        yield
    except PERMANENT + EXHAUSTED as exc:
        raise dg.Failure(description=f"{type(exc).__name__}: {exc}", metadata={"error_type": type(exc).__name__},
                         allow_retries=False) from exc


# --- credentials ---------------------------------------------------------------------------------
_credentials_cache: dict[str, tuple[float, AlpacaCredentials]] = {}
_credentials_lock = threading.Lock()


def _secretsmanager_client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # dagster-aws marks the resource beta; its client is plain boto3
        return SecretsManagerResource().get_client()


def read_credentials(secret_id: str, ttl_s: float, *, refresh: bool = False) -> AlpacaCredentials:
    """The secret's credentials, cached per process and re-read after `ttl_s` (rotation without restart)."""
    with _credentials_lock:
        cached = _credentials_cache.get(secret_id)
        if cached and not refresh and time.monotonic() - cached[0] < ttl_s:
            return cached[1]
    try:
        raw = _secretsmanager_client().get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        raise CredentialsError(f"cannot read Alpaca secret {secret_id!r}: {code}; check ALPACA_SECRET_ID and the IAM policy") from None
    except BotoCoreError as exc:
        raise CredentialsError(f"Secrets Manager unreachable while reading {secret_id!r}: {type(exc).__name__}; "
                               "check AWS_ENDPOINT_URL and the network") from None
    try:
        creds = AlpacaCredentials.from_secret_string(raw.get("SecretString") or "")
    except ValueError as exc:
        raise CredentialsError(f"Alpaca secret {secret_id!r} {exc}") from None
    with _credentials_lock:
        _credentials_cache[secret_id] = (time.monotonic(), creds)
    return creds


# --- the gateway: one per process and configuration ----------------------------------------------
@dataclass(frozen=True)
class GatewayConfig:
    trading_url: str | None
    data_url: str | None
    paper: bool
    secret_id: str
    credentials_ttl_s: float
    rate_limit_per_minute: int
    rate_limiter_url: str
    request_timeout_s: float
    max_attempts: int
    circuit_failure_threshold: int
    circuit_reset_s: float
    metrics_namespace: str


class _CountedAsFailure(Exception):
    """Marks an attempt that should open the circuit breaker when repeated."""


class _AlpacaSession(requests.Session):
    """The session alpaca-py's clients use: every request passes through the gateway."""

    def __init__(self, gateway: _Gateway):
        super().__init__()
        self._gateway = gateway

    # alpaca-py calls request(method, url, **opts) only; the gateway sets the timeout keyword itself
    def request(self, method, url, **kwargs):  # type: ignore[override]  # noqa: ANN001 - requests' own signature
        response = self._gateway.send(super().request, method, url, **kwargs)
        response.__class__ = _Answer  # alpaca-py decodes every body with response.json()
        return response


class _Answer(requests.Response):
    """A response whose body is decoded by orjson: twice as fast as the standard library on a 10,000-bar page.

    A body orjson refuses goes to the standard library, which also reads the NaN and Infinity that RFC 8259
    leaves out but Python's own JSON writer emits, so such numbers reach the bar checks and are held back
    bar by bar; what neither reads raises json's JSONDecodeError (a ValueError, typed by `_call`).
    """

    def json(self, **kwargs):  # noqa: ANN003 - requests' own signature
        return decode_json(self.content)


def decode_json(body: bytes) -> Any:
    """An answer's body: orjson, or the standard library (NaN, Infinity) for what orjson refuses; else a ValueError."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


class _Gateway:
    def __init__(self, config: GatewayConfig):
        self.config = config
        self.limiter = shared_limiter(config.rate_limiter_url, config.rate_limit_per_minute)
        self.breaker = pybreaker.CircuitBreaker(fail_max=config.circuit_failure_threshold,
                                                reset_timeout=config.circuit_reset_s, name="alpaca")
        self.metrics: MetricsPublisher = publisher_for(config.metrics_namespace)
        self._quota_reset_at = 0.0  # the server said: nothing left until then
        self._lock = threading.Lock()
        self._local = threading.local()
        self._clients: dict[str, Any] = {}
        self._clients_for: AlpacaCredentials | None = None
        self.requests_sent = 0

    # clients --------------------------------------------------------------------------------------
    def client(self, kind: str, *, refresh_credentials: bool = False):
        creds = read_credentials(self.config.secret_id, self.config.credentials_ttl_s, refresh=refresh_credentials)
        with self._lock:
            if creds != self._clients_for:
                self._clients, self._clients_for = {}, creds
            if kind not in self._clients:
                self._clients[kind] = self._build(kind, creds)
            return self._clients[kind]

    def _build(self, kind: str, creds: AlpacaCredentials) -> RESTClient:
        client: RESTClient
        if kind == "trading":
            client = TradingClient(creds.api_key, creds.secret_key, paper=self.config.paper, raw_data=True,
                                   url_override=self.config.trading_url)
        elif kind == "stocks":
            client = StockHistoricalDataClient(creds.api_key, creds.secret_key, raw_data=True, url_override=self.config.data_url)
        elif kind == "corporate_actions":
            client = CorporateActionsClient(creds.api_key, creds.secret_key, raw_data=True, url_override=self.config.data_url)
        else:
            client = CryptoHistoricalDataClient(creds.api_key, creds.secret_key, raw_data=True, url_override=self.config.data_url)
        client._session = _AlpacaSession(self)
        client._retry = 0  # retries live here, with backoff and the server's reset time, not alpaca-py's fixed 3 s
        return client

    # one logical call: retries, breaker, typed errors --------------------------------------------
    def get(self, kind: str, path: str, params: dict | None = None) -> Any:
        try:
            return self._get_with_retries(kind, path, params)
        except AlpacaAuthError:
            # A rotated secret: re-read it once before giving up.
            before = self._clients_for
            self.client(kind, refresh_credentials=True)
            if self._clients_for == before:
                raise
            return self._get_with_retries(kind, path, params)

    def _get_with_retries(self, kind: str, path: str, params: dict | None) -> Any:
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.config.max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(RETRYABLE),
            before_sleep=self._before_retry,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                self._local.attempt = attempt.retry_state.attempt_number
                return self._attempt(kind, path, params)
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _attempt(self, kind: str, path: str, params: dict | None) -> Any:
        client = self.client(kind)
        endpoint = f"/{client._api_version}{path}"
        try:
            return self.breaker.call(self._call_counting_failures, client, path, params, endpoint)
        except pybreaker.CircuitBreakerError:
            self.metrics.put("AlpacaApiFailures", 1, ErrorType="CircuitOpen")
            raise AlpacaUnavailableError(
                f"circuit breaker open after {self.config.circuit_failure_threshold} consecutive failures; "
                f"not calling {endpoint} for {self.config.circuit_reset_s:.0f} s") from None
        except _CountedAsFailure as marked:
            assert marked.__cause__ is not None  # raised from the error it marks
            raise marked.__cause__ from None

    def _call_counting_failures(self, client, path: str, params: dict | None, endpoint: str) -> Any:
        try:
            return self._call(client, path, params, endpoint)
        except (AlpacaUnavailableError, AlpacaTimeoutError) as exc:
            raise _CountedAsFailure() from exc  # the breaker counts outages, not bad requests or 429s

    def _call(self, client, path: str, params: dict | None, endpoint: str) -> Any:
        try:
            return client.get(path, params or {})
        except APIError as exc:
            raise self._typed(exc, endpoint, params or {}) from None
        except requests.Timeout:
            remaining = run_scope.current().remaining_s()
            if remaining is not None and remaining <= 0:
                self._budget_exceeded()
            raise AlpacaTimeoutError(f"no answer from {endpoint} within {self.config.request_timeout_s:g} s") from None
        except requests.ConnectionError as exc:
            raise AlpacaUnavailableError(f"cannot reach {endpoint}: {type(exc).__name__}") from None
        except requests.exceptions.ChunkedEncodingError:  # the connection closed before the whole body arrived
            raise AlpacaUnavailableError(f"answer from {endpoint} cut short: the connection closed mid-body") from None
        except ValueError as exc:  # requests' JSONDecodeError
            raise AlpacaResponseError(f"malformed JSON from {endpoint}: {exc}") from None

    def _typed(self, exc: APIError, endpoint: str, params: dict) -> AlpacaError:
        status = exc.status_code
        try:
            message = str(exc.message)[:200]
        except (ValueError, KeyError, TypeError):  # a body without "message", or not JSON
            message = (exc.response.text if exc.response is not None else "")[:200]
        if status in (403, 422) and any(m in message.lower() for m in RECENT_DATA_REFUSED):  # FAQ: 403; code: 422
            feed = params.get("feed", "the plan's default")
            return AlpacaSubscriptionError(
                f"Alpaca refused feed {feed!r} on {endpoint} ({status}: {message}): the subscription does not cover SIP "
                f"data of the last 15 minutes; set ALPACA_FEED=delayed_sip or iex, or end the window 15 minutes ago")
        if status in (401, 403):
            return AlpacaAuthError(f"Alpaca refused the credentials from secret {self.config.secret_id!r} "
                                   f"({status} on {endpoint}: {message}); rotate or fix the secret")
        if status == 429:
            return AlpacaRateLimitError(f"rate limit exhausted on {endpoint} (429)", _reset_at(exc.response),
                                        quota_spent=_remaining(exc.response) in (None, 0))
        if status is not None and status >= 500:
            return AlpacaUnavailableError(f"Alpaca unavailable: {status} on {endpoint}: {message}")
        if status == 404:
            return AlpacaNotFoundError(f"Alpaca has nothing at {endpoint} (404: {message})")
        return AlpacaRequestError(f"Alpaca rejected the request to {endpoint}: {status}: {message}")

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        backoff = retry.ALPACA.wait_s(retry_state.attempt_number)
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, AlpacaRateLimitError) and error.quota_spent and error.reset_at:
            return min(MAX_RATE_LIMIT_WAIT_S, max(0.0, error.reset_at - time.time()) + random.uniform(0, 0.5))
        return backoff

    def _before_retry(self, retry_state: tenacity.RetryCallState) -> None:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        self.metrics.put("AlpacaApiRetries", 1, ErrorType=type(error).__name__)
        logs.event(log, logging.WARNING, f"Alpaca retry after attempt {retry_state.attempt_number}: "
                   f"{type(error).__name__}: {str(error)[:200]}; next attempt in {retry_state.upcoming_sleep:.1f} s",
                   "alpaca_retry", attempt=retry_state.attempt_number, error=type(error).__name__,
                   detail=str(error)[:300], sleep_s=round(retry_state.upcoming_sleep, 3))

    # every HTTP request ---------------------------------------------------------------------------
    def send(self, request: Callable[..., requests.Response], method: str, url: str, **kwargs) -> requests.Response:
        self._wait_for_server_quota()
        waited = self._take_token()
        timeout = self.config.request_timeout_s
        remaining = run_scope.current().remaining_s()
        if remaining is not None:
            if remaining <= 0:
                self._budget_exceeded()
            timeout = min(timeout, remaining)  # a hung request cannot carry the run past its budget
        kwargs["timeout"] = (timeout, timeout)
        path = requests.utils.urlparse(url).path
        started = time.monotonic()
        status: int | str = "error"
        remaining = None
        try:
            response = request(method, url, **kwargs)
            status = response.status_code
            remaining = self._note_quota(response)
            return response
        except requests.Timeout:
            status = "timeout"
            raise
        except requests.ConnectionError:
            status = "connection_error"
            raise
        finally:
            latency_ms = (time.monotonic() - started) * 1000
            with self._lock:
                self.requests_sent += 1
            self._record(method, path, status, latency_ms, remaining, waited)

    def _budget_exceeded(self) -> None:
        scope = run_scope.current()
        self.metrics.put("RunTimeBudgetExceeded", 1, Job=scope.job or "none")
        self.metrics.flush()
        raise RunTimeBudgetExceeded(f"run of {scope.job} used its time budget of {scope.budget_s:.0f} s "
                                    f"({scope.elapsed_s():.0f} s elapsed); stopped instead of running on. "
                                    "Check Alpaca's latency and the run's step durations, then rerun")

    def _wait_for_server_quota(self) -> None:
        pause = self._quota_reset_at - time.time()
        if pause > 0:
            self.metrics.put("AlpacaRateLimitWaits", 1, Source="server")
            logs.event(log, logging.INFO, f"Alpaca's quota is spent: waiting {pause:.1f} s for its reset",
                       "alpaca_quota_wait", seconds=round(pause, 3))
            time.sleep(min(pause, MAX_RATE_LIMIT_WAIT_S))

    def _take_token(self) -> float:
        started = time.monotonic()
        self.limiter.try_acquire("alpaca", blocking=True)
        waited = time.monotonic() - started
        if waited > 0.05:
            self.metrics.put("AlpacaRateLimitWaits", 1, Source="limiter")
            self.metrics.put("AlpacaRateLimitWaitTime", waited * 1000, "Milliseconds")
        return waited

    def _note_quota(self, response: requests.Response) -> int | None:
        remaining = _remaining(response)
        if remaining is None:
            return None
        reset_at = _reset_at(response)
        if remaining <= 0 and reset_at:
            with self._lock:
                self._quota_reset_at = max(self._quota_reset_at, reset_at)
        return remaining

    def _record(self, method: str, path: str, status, latency_ms: float, remaining, waited_s: float) -> None:
        attempt = getattr(self._local, "attempt", 1)
        logs.event(log, logging.INFO, f"Alpaca {method} {path}: {status} in {latency_ms:.1f} ms (attempt {attempt}, "
                   f"{remaining if remaining is not None else '?'} left this minute)", "alpaca_request",
                   method=method, path=path, status=status, latency_ms=round(latency_ms, 1), attempt=attempt,
                   remaining=remaining, limiter_wait_ms=round(waited_s * 1000, 1))
        endpoint, job = _endpoint_name(path), run_scope.current().job
        # Each figure by its dimension, for dashboards, and as a plain total (plus by job), which the alarms watch.
        for dims in ({"Endpoint": endpoint}, {}, *([{"Job": job}] if job else [])):
            self.metrics.put("AlpacaApiCalls", 1, **dims)
        self.metrics.put("AlpacaApiLatency", latency_ms, "Milliseconds", Endpoint=endpoint)
        self.metrics.put("AlpacaApiLatency", latency_ms, "Milliseconds")
        if status != 200:
            for dims in ({"ErrorType": _failure_type(status)}, {}, *([{"Job": job}] if job else [])):
                self.metrics.put("AlpacaApiFailures", 1, **dims)
        if status == 429:
            self.metrics.put("AlpacaRateLimitExceeded", 1)


def _reset_at(response: requests.Response | None) -> float | None:
    try:
        return float(response.headers["X-RateLimit-Reset"]) if response is not None else None
    except (KeyError, ValueError):
        return None


def _remaining(response: requests.Response | None) -> int | None:
    try:
        return int(response.headers["X-RateLimit-Remaining"]) if response is not None else None
    except (KeyError, ValueError):
        return None


def _endpoint_name(path: str) -> str:
    if "/bars" in path:
        return "bars"
    if path.startswith("/v2/assets"):
        return "assets"
    return path.rsplit("/", 1)[-1] or "root"


def _failure_type(status) -> str:
    if status in (401, 403):
        return "Auth"
    if status == 429:
        return "RateLimit"
    if isinstance(status, int) and status >= 500:
        return "ServerError"
    if isinstance(status, int):
        return "ClientError"
    return {"timeout": "Timeout", "connection_error": "Connection"}.get(status, "Other")


_gateways: dict[GatewayConfig, _Gateway] = {}
_gateways_lock = threading.Lock()


def _gateway(config: GatewayConfig) -> _Gateway:
    with _gateways_lock:
        if config not in _gateways:
            _gateways[config] = _Gateway(config)
        return _gateways[config]


# --- the resource --------------------------------------------------------------------------------
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

    def _gateway(self) -> _Gateway:
        return _gateway(GatewayConfig(
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
        return self._gateway().requests_sent

    def list_assets(self, status: str | None = None, asset_class: str | None = None) -> list[dict]:
        """Every asset Alpaca lists (optionally filtered): one request, the API's dicts with every field kept."""
        params = {k: v for k, v in (("status", status), ("asset_class", asset_class)) if v}
        assets = self._gateway().get("trading", "/assets", params)
        if not isinstance(assets, list) or not all(isinstance(a, dict) for a in assets):
            raise AlpacaResponseError(f"/v2/assets answered {type(assets).__name__}, expected a JSON array of objects")
        return assets

    def get_asset(self, symbol: str) -> dict | None:
        """One asset by symbol (`GET /v2/assets/{symbol}`, crypto pairs as BTCUSD); None when Alpaca knows none."""
        try:
            asset = self._gateway().get("trading", f"/assets/{requests.utils.quote(symbol.replace('/', ''), safe='')}")
        except AlpacaNotFoundError:
            return None
        if not isinstance(asset, dict):
            raise AlpacaResponseError(f"/v2/assets/{symbol} answered {type(asset).__name__}, expected a JSON object")
        return asset

    def get_calendar(self, start: date, end: date) -> list[dict]:
        """XNYS trading days between start and end, as Alpaca's `/v2/calendar` dicts."""
        days = self._gateway().get("trading", "/calendar", {"start": start.isoformat(), "end": end.isoformat()})
        if not isinstance(days, list):
            raise AlpacaResponseError(f"/v2/calendar answered {type(days).__name__}, expected a JSON array")
        return days

    def validate_credentials(self) -> bool:
        """True when Alpaca accepts the secret's keys (GET /v2/account), False when it refuses them."""
        try:
            account = self._gateway().get("trading", "/account")
        except AlpacaAuthError:
            return False
        return isinstance(account, dict) and "id" in account

    def iter_corporate_actions(self, start: date, end: date, *, types: Sequence[str] = ()) -> Iterator[dict]:
        """Every page of `/v1/corporate-actions` for actions processed from start to end (inclusive), all symbols.

        One unfiltered request pages through every symbol's actions (up to 1,000 per page), far fewer
        requests than asking symbol by symbol; the caller keeps the symbols it stores.
        """
        gateway, token = self._gateway(), None
        params = {"start": start.isoformat(), "end": end.isoformat(), "limit": 1000, "sort": "asc",
                  **({"types": ",".join(types)} if types else {})}
        while True:
            page = gateway.get("corporate_actions", "/corporate-actions", {**params, **({"page_token": token} if token else {})})
            if not isinstance(page, dict) or not isinstance(page.get("corporate_actions", {}), dict):
                raise AlpacaResponseError("/v1/corporate-actions answered "
                                          f"{type(page).__name__}, expected an object with a corporate_actions object")
            yield page
            token = page.get("next_page_token")
            if not token:
                return

    def iter_bars(self, symbols: Sequence[str], timeframe: str, start: datetime, end: datetime, *,
                  asset_class: str, adjustment: str = "raw", feed: str | None = None,
                  asof: str | None = None) -> Iterator[pd.DataFrame]:
        """One DataFrame per API page (up to 10,000 bars across symbols) of one asset class's endpoint.

        Stocks go to /v2/stocks/bars with this resource's feed (or `feed`), crypto to /v1beta3/crypto/us/bars:
        which one is the asset's class (from the asset list), never the spelling of its symbol. `asof`
        (YYYY-MM-DD, stocks only) is the date the symbols are meant as of: Alpaca answers, under each symbol, the
        whole history of the company that held it on that date (its default, today, answers today's holders).
        """
        if timeframe not in TIMEFRAMES:
            raise AlpacaConfigError(f"timeframe {timeframe!r} is not one of {', '.join(TIMEFRAMES)}")
        if asset_class not in ASSET_CLASSES:
            raise AlpacaConfigError(f"asset class {asset_class!r} has no bars endpoint here; use one of {', '.join(ASSET_CLASSES)}")
        symbols = sorted(set(symbols))
        if not symbols:
            return
        window = {"timeframe": timeframe, "start": _rfc3339(start), "end": _rfc3339(end), "limit": PAGE_LIMIT, "sort": "asc"}
        if asset_class == CRYPTO:
            yield from self._pages("crypto", "/crypto/us/bars", symbols, window)
        else:
            yield from self._pages("stocks", "/stocks/bars", symbols,
                                   {**window, "adjustment": adjustment, "feed": feed or self.data_feed(),
                                    **({"asof": asof} if asof else {})})

    def _pages(self, kind: str, path: str, symbols: list[str], params: dict) -> Iterator[pd.DataFrame]:
        gateway, token = self._gateway(), None
        while True:
            page = gateway.get(kind, path, {**params, "symbols": ",".join(symbols), **({"page_token": token} if token else {})})
            frame, token = bars_page_frame(page, path, requested=symbols)
            yield frame
            if not token:
                return


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def bars_page_frame(page: Any, path: str, requested: Collection[str] | None = None) -> tuple[pd.DataFrame, str | None]:
    """One bars page as a DataFrame with BAR_COLUMNS, plus the next page token.

    Symbols become DynamoDB keys, so a page with bars of a symbol that was not `requested` is refused,
    as is a page whose envelope is not Alpaca's. A single bar missing or mistyping a field does not cost
    the page: its row carries a FAULT column ("field: reason") for screening to hold it back, its
    unreadable values NaN (a time that is not RFC 3339: NaT).
    """
    if not isinstance(page, dict) or "bars" not in page:
        raise AlpacaResponseError(f"{path} answered without a 'bars' object")
    bars = page["bars"] or {}
    token = page.get("next_page_token")
    if not isinstance(bars, dict) or not (token is None or isinstance(token, str)):
        raise AlpacaResponseError(f"{path} answered 'bars' of type {type(bars).__name__}, expected an object by symbol")
    unexpected = sorted(set(bars) - set(requested)) if requested is not None else []
    if unexpected:
        raise AlpacaResponseError(f"{path} answered bars of {len(unexpected)} symbol(s) not asked for, "
                                  f"e.g. {unexpected[0][:64]!r}")
    lists = [items or [] for items in bars.values()]
    wrong = next((s for s, items in zip(bars, lists) if not isinstance(items, list)), None)
    if wrong is not None:
        raise AlpacaResponseError(f"{path} answered the bars of {wrong[:64]!r} as {type(bars[wrong]).__name__}, expected a list")
    rows = [b for items in lists for b in items]
    symbols = np.repeat(np.array(list(bars), dtype=object), [len(items) for items in lists])
    try:
        frame = pd.DataFrame({
            "symbol": symbols,
            "timestamp": _timestamps(_field(rows, "t", (str,))),
            **{column: np.array(_field(rows, key, _NUMBER), dtype=np.float64) for column, key in _PRICES_AND_VOLUME},
            "trade_count": np.array(_field(rows, "n", (int,), default=0), dtype=np.int64),
            "vwap": np.array(_field(rows, "vw", (*_NUMBER, type(None)), default=None), dtype=np.float64),  # null: NaN
        }, columns=BAR_COLUMNS)
    except (KeyError, TypeError, ValueError, OverflowError):
        frame = _bar_by_bar(symbols, rows)  # rare: find the bars at fault, keep the others
    return frame, token or None


_NUMBER = (int, float)
_REQUIRED = object()
_UTC_NS = pa.timestamp("ns", tz="UTC")
_PRICES_AND_VOLUME = (("open", "o"), ("high", "h"), ("low", "l"), ("close", "c"), ("volume", "v"))
_INT64 = np.iinfo(np.int64)


def _bar_by_bar(symbols: np.ndarray, rows: list) -> pd.DataFrame:
    """The frame of `bars_page_frame`, parsed bar by bar: each bar's first fault named, its bad values NaN."""
    faults: list[str | None] = [None] * len(rows)

    def value(i: int, key: str, read, default: object = _REQUIRED) -> Any:
        bar = rows[i]
        if not isinstance(bar, dict):
            faults[i] = faults[i] or f"bar: a JSON {_json_type(bar)}, not an object"
            return None
        if key not in bar:
            if default is _REQUIRED:
                faults[i] = faults[i] or f"{key}: missing"
            return default if default is not _REQUIRED else None
        try:
            return read(bar[key])
        except (TypeError, ValueError, OverflowError) as exc:
            faults[i] = faults[i] or f"{key}: {exc}"
            return None

    indices = range(len(rows))
    stamps = [value(i, "t", _stamp) for i in indices]
    numbers = {column: [value(i, key, _price) for i in indices] for column, key in _PRICES_AND_VOLUME}
    counts = [value(i, "n", _count, default=0) for i in indices]
    vwaps = [value(i, "vw", _vwap, default=None) for i in indices]
    frame = pd.DataFrame({
        "symbol": symbols,
        "timestamp": pd.Series(pd.to_datetime(stamps, utc=True)),
        **{column: np.array([np.nan if x is None else x for x in xs], dtype=np.float64) for column, xs in numbers.items()},
        "trade_count": np.array([0 if x is None else x for x in counts], dtype=np.int64),
        "vwap": np.array([np.nan if x is None else x for x in vwaps], dtype=np.float64),
    }, columns=BAR_COLUMNS)
    frame[FAULT] = pd.Series(faults, dtype=object)
    return frame


def _json_type(value: Any) -> str:
    return {bool: "boolean", type(None): "null", str: "string", list: "array", dict: "object"}.get(
        type(value), "number")


def _price(raw: Any) -> float:
    if type(raw) not in _NUMBER:
        raise TypeError(f"a JSON {_json_type(raw)}, not a number")
    try:
        return float(raw)
    except OverflowError:
        raise OverflowError(f"an integer of {len(str(raw))} digits, beyond a 64-bit float") from None


def _vwap(raw: Any) -> float | None:
    return None if raw is None else _price(raw)


def _count(raw: Any) -> int:
    if type(raw) is not int:
        raise TypeError(f"a JSON {_json_type(raw)}, not an integer" if type(raw) is not float else f"{raw!r}, not an integer")
    if not _INT64.min <= raw <= _INT64.max:
        raise OverflowError(f"an integer of {len(str(raw))} digits, beyond 64 bits")
    return raw


def _stamp(raw: Any) -> pd.Timestamp:
    if type(raw) is not str:
        raise TypeError(f"a JSON {_json_type(raw)}, not an RFC 3339 time")
    try:
        return pd.Timestamp(_timestamps([raw]).iloc[0])
    except (ValueError, pa.ArrowInvalid):
        raise ValueError(f"{raw[:40]!r} is not an RFC 3339 time") from None


def _field(rows: list[dict], name: str, types: tuple[type, ...], default: object = _REQUIRED) -> list:
    """One field of every bar; exact JSON types, since numpy would read true as 1.0 and "101.5" as 101.5."""
    try:
        values = list(map(operator.itemgetter(name), rows))
    except KeyError:
        if default is _REQUIRED:
            raise
        values = [b.get(name, default) for b in rows]  # Alpaca leaves out "n" and "vw" of some bars
    strange = set(map(type, values)) - set(types)
    if strange:
        raise TypeError(f"field {name!r} holds {', '.join(sorted(t.__name__ for t in strange))}")
    return values


def _timestamps(stamps: list[str]) -> pd.Series:
    """RFC 3339 stamps as UTC times: Arrow's parser, or pandas' ISO 8601 one for what Arrow refuses (no zone)."""
    try:
        return pa.array(stamps, type=pa.string()).cast(_UTC_NS).to_pandas()
    except pa.ArrowInvalid:
        return pd.Series(pd.to_datetime(stamps, utc=True, format="ISO8601"))
