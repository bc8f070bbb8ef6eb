"""The Alpaca keys, read from Secrets Manager and cached per process, re-read after a TTL so a rotation needs no
restart."""

from __future__ import annotations

import threading
import time
import warnings

import dagster as dg
from botocore.exceptions import BotoCoreError, ClientError
from dagster_aws.secretsmanager import SecretsManagerResource

from signal9_pipeline import redaction
from signal9_pipeline.credentials import AlpacaCredentials
from signal9_pipeline.resources.alpaca_errors import CredentialsError

redaction.install()

_credentials_cache: dict[str, tuple[float, AlpacaCredentials]] = {}
_credentials_lock = threading.Lock()


def _secretsmanager_client():
    with warnings.catch_warnings():
        # dagster-aws marks the resource beta; its client is plain boto3
        warnings.simplefilter("ignore", dg.BetaWarning)
        return SecretsManagerResource().get_client()


def forget_credentials() -> None:
    """Forget the cached credentials: the next request reads the secret again (tests)."""
    with _credentials_lock:
        _credentials_cache.clear()


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
        raise CredentialsError(f"cannot read Alpaca secret {secret_id!r}: {code}; "
                               "check ALPACA_SECRET_ID and the IAM policy") from None
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

