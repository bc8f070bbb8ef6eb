"""Idempotent provisioning of what the pipeline needs in AWS: tables, event bus, credentials secret.

The same code provisions the local stack (boto3 pointed at dynalite and moto by
`AWS_ENDPOINT_URL*`) and a real AWS account. Running it twice changes nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from signal9_pipeline import redaction
from signal9_pipeline.settings import Settings

redaction.install()

# Environment variables that seed the Alpaca secret when it does not exist yet.
SEED_KEY_ENV, SEED_SECRET_ENV = "ALPACA_API_KEY_ID", "ALPACA_API_SECRET_KEY"


class ProvisionError(RuntimeError):
    """Provisioning could not finish; the message says which resource and what to do."""


@dataclass(frozen=True)
class AlpacaCredentials:
    api_key: str
    secret_key: str
    paper: bool = True

    def __repr__(self) -> str:  # never print the values
        return f"AlpacaCredentials(api_key=***, secret_key=***, paper={self.paper})"

    def secret_string(self) -> str:
        return json.dumps({"apiKey": self.api_key, "secretKey": self.secret_key, "paper": self.paper})


TABLE_KEYS = {
    "assets": ([("asset_id", "HASH")], [("asset_id", "S")]),
    "market_data": ([("series", "HASH"), ("day", "RANGE")], [("series", "S"), ("day", "S")]),
}


def provision(settings: Settings, credentials: AlpacaCredentials | None = None) -> list[str]:
    """Create whatever is missing; returns one line per resource saying what was done."""
    try:
        done = [
            ensure_table(settings.assets_table, *TABLE_KEYS["assets"]),
            ensure_table(settings.market_data_table, *TABLE_KEYS["market_data"]),
            ensure_event_bus(settings.event_bus),
            ensure_secret(settings.alpaca_secret_id, credentials or _seed_credentials()),
        ]
    except (BotoCoreError, ClientError) as exc:
        raise ProvisionError(f"provisioning failed: {exc}; check AWS_ENDPOINT_URL* and AWS credentials") from exc
    return done


def _seed_credentials() -> AlpacaCredentials | None:
    key, secret = os.environ.get(SEED_KEY_ENV), os.environ.get(SEED_SECRET_ENV)
    return AlpacaCredentials(key, secret) if key and secret else None


def ensure_table(name: str, key_schema: list[tuple[str, str]], attributes: list[tuple[str, str]]) -> str:
    client = boto3.client("dynamodb")
    try:
        client.describe_table(TableName=name)
        return f"table {name}: exists"
    except client.exceptions.ResourceNotFoundException:
        pass
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": a, "KeyType": k} for a, k in key_schema],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in attributes],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    return f"table {name}: created"


def ensure_event_bus(name: str) -> str:
    client = boto3.client("events")
    try:
        client.describe_event_bus(Name=name)
        return f"event bus {name}: exists"
    except client.exceptions.ResourceNotFoundException:
        client.create_event_bus(Name=name)
        return f"event bus {name}: created"


def ensure_secret(secret_id: str, credentials: AlpacaCredentials | None) -> str:
    """Create the secret, or update its value when credentials are given; never print the value."""
    client = boto3.client("secretsmanager")
    try:
        client.describe_secret(SecretId=secret_id)
        exists = True
    except client.exceptions.ResourceNotFoundException:
        exists = False
    if credentials is None:
        if exists:
            return f"secret {secret_id}: exists"
        raise ProvisionError(
            f"secret {secret_id} does not exist and no credentials were given: "
            f"set {SEED_KEY_ENV} and {SEED_SECRET_ENV} to create it"
        )
    if exists:
        client.put_secret_value(SecretId=secret_id, SecretString=credentials.secret_string())
        return f"secret {secret_id}: updated"
    client.create_secret(Name=secret_id, SecretString=credentials.secret_string())
    return f"secret {secret_id}: created"
