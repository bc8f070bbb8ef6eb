"""alpaca-py's clients, wired so that every request they send passes through the gateway.

alpaca-py offers no public way to hand its clients a session or to turn its own retries off, so this
module sets three of its private attributes and relies on one habit of its code; it is the only module
that does (`signal9_pipeline_tests/resources/test_alpaca_clients.py` pins each against ALPACA_PY_CHECKED):
- `client._session`: the requests.Session `RESTClient._one_request` sends every request with;
- `client._retry`: alpaca-py's own retries of a 429 (a fixed 3 s apart), set to none;
- `client._api_version`: the version prefix (`v2`, `v1beta3`, `v1`) it puts before every path;
- it decodes a body with `response.json()` on the response the session returned, so the session swaps in
  `_Answer` (`response.__class__`) to decode with orjson.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

import orjson
import requests
from alpaca.common.rest import RESTClient
from alpaca.data.historical import CryptoHistoricalDataClient, StockHistoricalDataClient
from alpaca.data.historical.corporate_actions import CorporateActionsClient
from alpaca.trading.client import TradingClient

from signal9_pipeline.credentials import AlpacaCredentials

# The alpaca-py release whose private attributes above were read in its source (alpaca/common/rest.py).
ALPACA_PY_CHECKED = "0.44.0"
KINDS = ("trading", "stocks", "corporate_actions", "crypto")


class Sender(Protocol):
    """What sends each HTTP request: the gateway."""

    def send(self, request: Callable[..., requests.Response], method: str, url: str, **kwargs) -> requests.Response: ...


def alpaca_client(kind: str, creds: AlpacaCredentials, sender: Sender, *, paper: bool, trading_url: str | None,
                  data_url: str | None) -> RESTClient:
    """alpaca-py's client for `kind` (one of KINDS), raw JSON answers, every request sent by `sender`."""
    client: RESTClient
    if kind == "trading":
        client = TradingClient(creds.api_key, creds.secret_key, paper=paper, raw_data=True, url_override=trading_url)
    elif kind == "stocks":
        client = StockHistoricalDataClient(creds.api_key, creds.secret_key, raw_data=True, url_override=data_url)
    elif kind == "corporate_actions":
        client = CorporateActionsClient(creds.api_key, creds.secret_key, raw_data=True, url_override=data_url)
    else:
        client = CryptoHistoricalDataClient(creds.api_key, creds.secret_key, raw_data=True, url_override=data_url)
    client._session = _AlpacaSession(sender)
    # retries live in the gateway, with backoff and the server's reset time, not alpaca-py's fixed 3 s
    client._retry = 0
    return client


def api_version(client: RESTClient) -> str:
    """The version prefix the client puts before every path (`v2`, `v1beta3`, `v1`)."""
    return client._api_version


class _AlpacaSession(requests.Session):
    """The session alpaca-py's clients use: every request passes through the sender."""

    def __init__(self, sender: Sender):
        super().__init__()
        self._sender = sender

    # alpaca-py calls request(method, url, **opts) only; the gateway sets the timeout keyword itself
    def request(self, method, url, **kwargs):  # type: ignore[override]
        response = self._sender.send(super().request, method, url, **kwargs)
        response.__class__ = _Answer  # alpaca-py decodes every body with response.json()
        return response


class _Answer(requests.Response):
    """A response whose body is decoded by orjson: twice as fast as the standard library on a 10,000-bar page.

    A body orjson refuses goes to the standard library, which also reads the NaN and Infinity that RFC 8259
    leaves out but Python's own JSON writer emits, so such numbers reach the bar checks and are held back
    bar by bar; what neither reads raises json's JSONDecodeError (a ValueError, typed by the gateway).
    """

    def json(self, **kwargs):  # requests' own signature
        return decode_json(self.content)


def decode_json(body: bytes) -> Any:
    """An answer's body: orjson, or the standard library (NaN, Infinity) for what orjson refuses; else a ValueError."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)
