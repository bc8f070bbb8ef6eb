"""The one way to Alpaca: every request waits for the quota, takes a token, is timed, logged, measured and retried.

`Gateway.send` handles each HTTP request alpaca-py's clients send: it waits for the server's quota when
Alpaca said it is spent, takes a token from the shared limiter, applies the timeout, and logs and
measures the call. `Gateway.get` wraps each call in tenacity retries with a circuit breaker and turns
failures into the typed errors of `alpaca_errors`, so a failed run says which one happened.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pybreaker
import requests
import tenacity
from alpaca.common.exceptions import APIError
from alpaca.common.rest import RESTClient

from signal9_pipeline import logs, retry
from signal9_pipeline.credentials import AlpacaCredentials
from signal9_pipeline.resources import run_scope
from signal9_pipeline.resources.alpaca_clients import alpaca_client, api_version
from signal9_pipeline.resources.alpaca_credentials import read_credentials
from signal9_pipeline.resources.alpaca_errors import (
    RETRYABLE,
    AlpacaAuthError,
    AlpacaError,
    AlpacaNotFoundError,
    AlpacaRateLimitError,
    AlpacaRequestError,
    AlpacaResponseError,
    AlpacaSubscriptionError,
    AlpacaTimeoutError,
    AlpacaUnavailableError,
    RunTimeBudgetExceeded,
)
from signal9_pipeline.resources.metrics import MetricsPublisher, publisher_for
from signal9_pipeline.resources.rate_limit import shared_limiter

logs.install()

# Alpaca's refusals of recent data on a plan that does not cover it: today's wording (market-data FAQ, code 42210000)
# and the older one (2021-2022, alpaca-trade-api-python issue 551), both in the contract corpus.
RECENT_DATA_REFUSED = ("subscription does not permit querying recent sip data",
                       "subscription does not permit querying data from the past 15 minutes")
MAX_RATE_LIMIT_WAIT_S = 65.0
log = logging.getLogger("signal9.alpaca")


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


class Gateway:
    """Every request to Alpaca for one configuration: limiter, timeout, metrics, logs; retries, breaker, typed
    errors."""

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
        return alpaca_client(kind, creds, self, paper=self.config.paper, trading_url=self.config.trading_url,
                             data_url=self.config.data_url)

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
        endpoint = f"/{api_version(client)}{path}"
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
                f"Alpaca refused feed {feed!r} on {endpoint} ({status}: {message}): the subscription does not "
                "cover SIP data of the last 15 minutes; set ALPACA_FEED=delayed_sip or iex, or end the window "
                "15 minutes ago")
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
        error = retry_state.outcome.exception() if retry_state.outcome else None if retry_state.outcome else None
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
        self.wait_for_server_quota()
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
            remaining = self.note_quota(response)
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

    def wait_for_server_quota(self) -> None:
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

    def note_quota(self, response: requests.Response) -> int | None:
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


_gateways: dict[GatewayConfig, Gateway] = {}
_gateways_lock = threading.Lock()


def gateway_for(config: GatewayConfig) -> Gateway:
    """The process's gateway for `config`: one limiter, breaker and set of clients per configuration."""
    with _gateways_lock:
        if config not in _gateways:
            _gateways[config] = Gateway(config)
        return _gateways[config]


def reset() -> None:
    """Forget every gateway: the next request builds its clients, limiter and breaker anew (tests)."""
    with _gateways_lock:
        _gateways.clear()

