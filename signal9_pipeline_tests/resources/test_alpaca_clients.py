"""Every alpaca-py internal the access layer relies on, pinned: an alpaca-py upgrade that changes one fails here.

`resources.alpaca_clients` sets `client._session` and `client._retry`, reads `client._api_version`, and swaps
the class of each response so that alpaca-py's `response.json()` decodes with orjson. None of that is
alpaca-py's public API; these tests fail, naming what to re-check, when a release moves any of it.
No network: the sender answers with canned responses.
"""

from importlib.metadata import version

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.historical import StockHistoricalDataClient

from signal9_pipeline.credentials import AlpacaCredentials
from signal9_pipeline.resources import alpaca_clients
from signal9_pipeline.resources.alpaca_clients import ALPACA_PY_CHECKED, KINDS, alpaca_client, api_version

RECHECK = ("re-read alpaca/common/rest.py (RESTClient.__init__, _request, _one_request) for _session, _retry, "
           "_api_version and response.json(), adapt resources/alpaca_clients.py, then set ALPACA_PY_CHECKED")
VERSIONS = {"trading": "v2", "stocks": "v2", "corporate_actions": "v1", "crypto": "v1beta3"}
DATA_URL = "http://data.invalid"


class Sender:
    """Answers each request with the next canned response, and remembers what was sent."""

    def __init__(self, *answers: requests.Response):
        self.answers = list(answers)
        self.sent: list[tuple[str, str, dict]] = []

    def send(self, request, method: str, url: str, **kwargs) -> requests.Response:
        self.sent.append((method, url, kwargs))
        return self.answers.pop(0)


def answer(status: int, body: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code, response._content, response.url = status, body, DATA_URL
    response.headers["Content-Type"] = "application/json"
    return response


def client_for(kind: str, sender: Sender):
    return alpaca_client(kind, AlpacaCredentials("key", "secret"), sender, paper=True, trading_url="http://trading.invalid",
                         data_url=DATA_URL)


def test_alpaca_py_is_the_release_whose_internals_were_checked():
    installed = version("alpaca-py")
    assert installed == ALPACA_PY_CHECKED, f"alpaca-py {installed}, internals checked on {ALPACA_PY_CHECKED}: {RECHECK}"


def test_alpaca_py_defines_the_private_attributes_the_wiring_replaces():
    """Setting an attribute alpaca-py no longer reads would silently do nothing; each must be alpaca-py's own."""
    client = StockHistoricalDataClient("key", "secret", raw_data=True)
    assert isinstance(client._session, requests.Session), RECHECK
    assert type(client._retry) is int and client._retry > 0, RECHECK
    assert isinstance(client._api_version, str), RECHECK


@pytest.mark.parametrize("kind", KINDS)
def test_every_request_of_every_client_passes_through_the_sender_once(kind):
    sender = Sender(answer(200, b'{"bars": {}, "next_page_token": null}'))
    client = client_for(kind, sender)
    assert api_version(client) == VERSIONS[kind], RECHECK
    assert client.get("/things", {"limit": 1}) == {"bars": {}, "next_page_token": None}
    [(method, url, kwargs)] = sender.sent
    assert method == "GET" and url.endswith(f"/{VERSIONS[kind]}/things") and kwargs["params"] == {"limit": 1}, RECHECK


def test_alpaca_py_decodes_the_body_with_the_json_method_of_the_swapped_response(monkeypatch):
    decoded = []
    monkeypatch.setattr(alpaca_clients, "decode_json", lambda body: decoded.append(body) or {"read": "here"})
    sent = answer(200, b'{"vw": NaN}')
    assert client_for("stocks", Sender(sent)).get("/stocks/bars") == {"read": "here"}, RECHECK
    assert type(sent) is alpaca_clients._Answer and decoded == [b'{"vw": NaN}'], RECHECK


def test_alpaca_py_retries_nothing_itself():
    """A 429 reaches the gateway at once: alpaca-py's own retry (3 s apart) would send it again."""
    sender = Sender(answer(429, b'{"message": "too many requests"}'), answer(200, b"{}"))
    with pytest.raises(APIError) as raised:
        client_for("crypto", sender).get("/crypto/us/bars")
    assert len(sender.sent) == 1, RECHECK
    assert raised.value.status_code == 429 and raised.value.message == "too many requests", RECHECK
    assert raised.value.response.status_code == 429, RECHECK
