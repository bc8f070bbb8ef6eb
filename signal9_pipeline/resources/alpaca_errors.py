"""The typed failures of Alpaca access, and which of them a step retry can fix.

Every failure of a request to Alpaca ends as one of these, so a failed run says which one happened
and what to do about it; `fail_without_step_retries` turns the ones a retry cannot fix into a
Dagster failure that names them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dagster as dg

from signal9_pipeline.resources.rate_limit import RateLimiterError


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
    """The account's market-data subscription does not cover the feed and window asked for (the credentials are
    fine)."""


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

