"""Contract (a), errors: each recorded Alpaca error body, replayed with its status, becomes the right typed error.

Where the source does not show the status, every status Alpaca is known to answer
that body with is tried (the recent-SIP refusal: 403 per Alpaca's FAQ, 422 by its
code). Bodies with only a `message` must read as well as `{"code", "message"}` ones.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from signal9_pipeline.resources import alpaca_gateway
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.alpaca_errors import (
    AlpacaAuthError,
    AlpacaNotFoundError,
    AlpacaRateLimitError,
    AlpacaRequestError,
    AlpacaSubscriptionError,
)
from signal9_pipeline_tests.contract import corpus

EXPECTED = {  # recording -> [(status, typed error)], the status where the source shows none
    "alpacapy_data_no_bar_found_message_only": [(404, AlpacaNotFoundError)],
    "faq_data_subscription_sip_recent": [(403, AlpacaSubscriptionError), (422, AlpacaSubscriptionError)],
    "issue_data_422_invalid_timeframe": [(422, AlpacaRequestError)],
    "issue_data_message_only_timeframe_too_large": [(422, AlpacaRequestError), (400, AlpacaRequestError)],
    "issue_data_subscription_past_15_minutes_converted": [(422, AlpacaSubscriptionError),
                                                          (403, AlpacaSubscriptionError)],
    "issue_trading_429_rate_limit_message_converted": [(429, AlpacaRateLimitError)],
    "learn_trading_401_unauthorized": [(401, AlpacaAuthError)],
    "alpacapy_broker_401_request_not_authorized": [(401, AlpacaAuthError)],
    "ccxt_data_invalid_crypto_symbol": [(400, AlpacaRequestError)],
    "ccxt_forbidden_message_only": [(403, AlpacaAuthError)],
    "ccxt_trading_429_rate_limit_exceeded": [(429, AlpacaRateLimitError)],
}
CASES = [(e, status, error) for e in corpus.of_kind("error") if e.name in EXPECTED
         for status, error in EXPECTED[e.name]]


@pytest.fixture
def resource(replay, stack_env, monkeypatch):
    alpaca_gateway.reset()
    return AlpacaResource.from_settings(data_url=replay.url, max_attempts=2, rate_limit_per_minute=100_000)


def test_every_recorded_data_api_error_is_covered():
    data_errors = {e.name for e in corpus.of_kind("error") if e.host == "data"}
    assert data_errors and data_errors <= set(EXPECTED)


@pytest.mark.parametrize("entry,status,error", CASES, ids=[f"{e.name}-{s}" for e, s, _ in CASES])
def test_a_recorded_error_body_becomes_its_typed_error_naming_the_cause(entry, status, error, replay, resource):
    replay.clear()
    replay.fail_with(status, (corpus.CORPUS / entry.file).read_bytes())
    with pytest.raises(error) as raised:
        next(resource.iter_bars(["AAPL"], "1Day", datetime(2024, 1, 2), datetime(2024, 1, 3), asset_class="us_equity"))
    assert type(raised.value) is error
    message = str(raised.value)
    if error is not AlpacaRateLimitError:
        assert entry.body["message"][:60] in message  # Alpaca's own words reach the run's failure
    if error is AlpacaSubscriptionError:
        assert "'iex'" in message and "ALPACA_FEED=delayed_sip" in message and "15 minutes ago" in message
        assert "rotate" not in message  # the credentials are fine: no advice to rotate them
        assert f"({status}: " in message  # the status Alpaca answered, not a fixed one
