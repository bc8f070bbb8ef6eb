"""AlpacaResource against the local stack: credentials from Secrets Manager, the sandbox over HTTP."""

import boto3
import pytest
import requests

from signal9_pipeline.resources import alpaca as alpaca_module
from signal9_pipeline.resources.alpaca import AlpacaAuthError, AlpacaResource, CredentialsError


@pytest.fixture(autouse=True)
def fresh_credentials_cache():
    alpaca_module._credentials_cache.clear()
    yield
    alpaca_module._credentials_cache.clear()


def test_list_assets_returns_every_asset_with_every_field(stack_env, default_universe):
    assets = AlpacaResource().list_assets()
    assert assets == default_universe
    assert {a["class"] for a in AlpacaResource().list_assets(asset_class="crypto")} == {"crypto"}


@pytest.mark.parametrize("secret_string,problem", [
    ("not json", "is not JSON"),
    ('{"apiKey": "AKSECRETVALUE1"}', "lacks"),
    ('["AKSECRETVALUE1"]', "lacks"),
])
def test_a_malformed_secret_raises_credentials_error_without_its_value(stack_env, secret_string, problem):
    secret_id = f"signal9/test-{abs(hash(secret_string))}"
    boto3.client("secretsmanager").create_secret(Name=secret_id, SecretString=secret_string)
    with pytest.raises(CredentialsError, match=problem) as raised:
        AlpacaResource(credentials_secret_id=secret_id).list_assets()
    assert secret_id in str(raised.value) and "AKSECRETVALUE1" not in str(raised.value)


def test_a_missing_secret_raises_credentials_error_before_any_alpaca_call(stack_env):
    with pytest.raises(CredentialsError, match="signal9/missing"):
        AlpacaResource(credentials_secret_id="signal9/missing").list_assets()
    stats = requests.get(f"{stack_env['SIGNAL9_SANDBOX_URL']}/_sandbox/stats", timeout=10).json()
    assert stats["requests"] == []


def test_wrong_keys_raise_auth_error(stack_env):
    boto3.client("secretsmanager").create_secret(Name="signal9/wrong-keys", SecretString='{"apiKey": "PKWRONG", "secretKey": "nope"}')
    with pytest.raises(AlpacaAuthError, match="signal9/wrong-keys") as raised:
        AlpacaResource(credentials_secret_id="signal9/wrong-keys").list_assets()
    assert "nope" not in str(raised.value) and "PKWRONG" not in str(raised.value)
