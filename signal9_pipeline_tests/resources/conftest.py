"""Fixtures for the access layer: a sandbox of the test's own, its keys in a Secrets Manager secret of its own."""

import uuid

import boto3
import pytest

from signal9_pipeline.resources import alpaca_credentials, alpaca_gateway
from signal9_pipeline.resources import metrics as metrics_module
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline_tests.conftest import TEST_KEY, TEST_SECRET


@pytest.fixture(autouse=True)
def fresh_process_state():
    """Credentials cache, gateways and metric buffers are per process; tests must not see each other's."""
    yield
    alpaca_credentials.forget_credentials()
    alpaca_gateway.reset()
    metrics_module.reset()


@pytest.fixture
def secret_for(stack_env):
    """Create a secret holding the given keys; returns its id."""

    def create(api_key: str = TEST_KEY, secret_key: str = TEST_SECRET) -> str:
        secret_id = f"signal9/test/{uuid.uuid4().hex[:12]}"
        boto3.client("secretsmanager").create_secret(
            Name=secret_id, SecretString=f'{{"apiKey": "{api_key}", "secretKey": "{secret_key}", "paper": true}}')
        return secret_id

    return create


@pytest.fixture
def resource_for(secret_for, tmp_path):
    """An AlpacaResource pointed at `server`, with a limiter file of its own."""

    def build(server, **fields) -> AlpacaResource:
        fields.setdefault("credentials_secret_id", secret_for())
        fields.setdefault("rate_limit_per_minute", 100_000)
        fields.setdefault("rate_limiter_url", f"sqlite:///{tmp_path / 'limiter.sqlite'}")
        return AlpacaResource.from_settings(trading_url=server.url, data_url=server.url, **fields)

    return build
