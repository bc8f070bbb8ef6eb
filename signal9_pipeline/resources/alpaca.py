"""Alpaca access: credentials from Secrets Manager and alpaca-py clients, for every part of the pipeline.

Fields default to the documented environment variables (None means "read the
environment"), so a directly constructed `AlpacaResource()` works in scripts
and notebooks as well as inside Dagster runs.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import dagster as dg
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from botocore.exceptions import BotoCoreError, ClientError
from dagster_aws.secretsmanager import SecretsManagerResource

from signal9_pipeline.settings import Settings


class AlpacaError(Exception):
    """Base of every typed Alpaca access failure."""


class CredentialsError(AlpacaError):
    """The Alpaca credentials secret is missing, unreadable or malformed (the message never holds its value)."""


class AlpacaAuthError(AlpacaError):
    """Alpaca refused the credentials (401/403)."""


class AlpacaResponseError(AlpacaError):
    """Alpaca answered something that is not the documented shape."""


@dataclass(frozen=True)
class Credentials:
    api_key: str
    secret_key: str
    paper: bool

    def __repr__(self) -> str:
        return f"Credentials(api_key=***, secret_key=***, paper={self.paper})"


def _secretsmanager_client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # dagster-aws marks the resource beta; its client is plain boto3
        return SecretsManagerResource().get_client()


_credentials_cache: dict[str, tuple[float, Credentials]] = {}
_credentials_lock = threading.Lock()


def read_credentials(secret_id: str, ttl_s: float) -> Credentials:
    """The secret's credentials, cached per process and re-read after `ttl_s` (rotation without restart)."""
    with _credentials_lock:
        cached = _credentials_cache.get(secret_id)
        if cached and time.monotonic() - cached[0] < ttl_s:
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
        data = json.loads(raw.get("SecretString") or "")
    except ValueError:
        raise CredentialsError(f"Alpaca secret {secret_id!r} is not JSON; store {{\"apiKey\", \"secretKey\", \"paper\"}}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) and data.get(k) for k in ("apiKey", "secretKey")):
        raise CredentialsError(f"Alpaca secret {secret_id!r} lacks non-empty string fields apiKey and secretKey")
    creds = Credentials(data["apiKey"], data["secretKey"], bool(data.get("paper", True)))
    with _credentials_lock:
        _credentials_cache[secret_id] = (time.monotonic(), creds)
    return creds


class AlpacaResource(dg.ConfigurableResource):
    """Alpaca's trading and market-data APIs for the pipeline."""

    trading_url: Optional[str] = None
    data_url: Optional[str] = None
    paper: bool = True
    credentials_secret_id: Optional[str] = None
    credentials_ttl_s: float = 300.0
    request_timeout_s: Optional[float] = None

    def _settings(self) -> Settings:
        return Settings.from_env()

    def _credentials(self) -> Credentials:
        return read_credentials(self.credentials_secret_id or self._settings().alpaca_secret_id, self.credentials_ttl_s)

    def _trading_client(self) -> TradingClient:
        creds = self._credentials()
        client = TradingClient(creds.api_key, creds.secret_key, paper=self.paper, raw_data=True,
                               url_override=self.trading_url or self._settings().alpaca_trading_url)
        return client

    def _get(self, client: Any, path: str, params: dict | None = None) -> Any:
        try:
            return client.get(path, params or {})
        except APIError as exc:
            if exc.status_code in (401, 403):
                raise AlpacaAuthError(f"Alpaca refused the credentials from secret "
                                      f"{self.credentials_secret_id or self._settings().alpaca_secret_id!r} "
                                      f"({exc.status_code} on {path}); rotate or fix the secret") from None
            raise
        except ValueError as exc:
            raise AlpacaResponseError(f"malformed JSON from {path}: {exc}") from None

    def list_assets(self, status: str | None = None, asset_class: str | None = None) -> list[dict]:
        """Every asset Alpaca lists (optionally filtered), as the API's dicts with every field kept."""
        params = {k: v for k, v in (("status", status), ("asset_class", asset_class)) if v}
        assets = self._get(self._trading_client(), "/assets", params)
        if not isinstance(assets, list):
            raise AlpacaResponseError(f"/v2/assets answered {type(assets).__name__}, expected a JSON array")
        return assets
