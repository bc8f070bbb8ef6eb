"""Idempotent provisioning of what the pipeline needs in AWS: tables, event bus, secret, alerts topic, alarms.

The same code provisions the local stack (boto3 pointed at dynalite and moto by
`AWS_ENDPOINT_URL*`) and a real AWS account. Running it twice changes nothing.
"""

from __future__ import annotations

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from signal9_pipeline import redaction, settings
from signal9_pipeline.alerting.alarms import ensure_alarms
from signal9_pipeline.credentials import AlpacaCredentials
from signal9_pipeline.resources.alerts import AlertsResource
from signal9_pipeline.settings import Settings
from signal9_pipeline.tables import assets as assets_table
from signal9_pipeline.tables import market_data as market_data_table

redaction.install()

# Environment variables that seed the Alpaca secret when it does not exist yet.
SEED_KEY_ENV, SEED_SECRET_ENV = "ALPACA_API_KEY_ID", "ALPACA_API_SECRET_KEY"


class ProvisionError(RuntimeError):
    """Provisioning could not finish; the message says which resource and what to do."""


# Each table's keys and indexes come from its module (`signal9_pipeline.tables`).
TABLE_KEYS = {"assets": assets_table.KEY_SCHEMA, "market_data": market_data_table.KEY_SCHEMA}
# Sparse indexes of the assets table: an item appears only while it carries the marker attribute.
ASSETS_INDEXES = assets_table.INDEXES


def provision(settings: Settings, credentials: AlpacaCredentials | None = None) -> list[str]:
    """Create whatever is missing; returns one line per resource saying what was done."""
    try:
        done = [
            ensure_table(settings.assets_table, *TABLE_KEYS["assets"], indexes=ASSETS_INDEXES),
            ensure_table(settings.market_data_table, *TABLE_KEYS["market_data"]),
            ensure_event_bus(settings.event_bus),
            ensure_secret(settings.alpaca_secret_id, credentials or _seed_credentials()),
        ]
        topic_arn = AlertsResource.from_settings().topic_arn()
        done += [f"alerts topic {topic_arn}: configured", *ensure_alarms(settings.metrics_namespace, topic_arn)]
    except (BotoCoreError, ClientError) as exc:
        raise ProvisionError(f"provisioning failed: {exc}; check AWS_ENDPOINT_URL* and AWS credentials") from exc
    return done


def _seed_credentials() -> AlpacaCredentials | None:
    key, secret = settings.get(SEED_KEY_ENV), settings.get(SEED_SECRET_ENV)
    return AlpacaCredentials(key, secret) if key and secret else None


def ensure_table(name: str, key_schema: list[tuple[str, str]], attributes: list[tuple[str, str]],
                 indexes: dict[str, str] | None = None) -> str:
    """Create the table (on-demand billing) with its sparse indexes, or add the indexes it lacks."""
    client = boto3.client("dynamodb")
    indexes = indexes or {}
    try:
        table = client.describe_table(TableName=name)["Table"]
    except client.exceptions.ResourceNotFoundException:
        table = None
    if table is None:
        client.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": a, "KeyType": k} for a, k in key_schema],
            AttributeDefinitions=([{"AttributeName": a, "AttributeType": t} for a, t in attributes]
                                  + _index_attributes(indexes)),
            BillingMode="PAY_PER_REQUEST",
            **({"GlobalSecondaryIndexes": [_index(i, a, key_schema) for i, a in indexes.items()]} if indexes else {}),
        )
        client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        return f"table {name}: created"
    present = {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])}
    missing = {i: a for i, a in indexes.items() if i not in present}
    for index, attribute in missing.items():  # one index per UpdateTable call, as DynamoDB requires
        _add_index(client, name, attributes, index, attribute, key_schema)
    present = {i["IndexName"] for i in client.describe_table(TableName=name)["Table"].get("GlobalSecondaryIndexes", [])}
    if set(indexes) - present:
        raise ProvisionError(f"table {name} lacks the indexes {sorted(set(indexes) - present)} and this DynamoDB "
                             "did not add them (dynalite cannot): for the local stack, remove .signal9/dynalite and "
                             "run `up` again")
    return f"table {name}: added indexes {', '.join(sorted(missing))}" if missing else f"table {name}: exists"


def _add_index(client, table: str, attributes, index: str, attribute: str, key_schema) -> None:
    definitions = (_index_attributes({index: attribute})
                   + [{"AttributeName": a, "AttributeType": t} for a, t in attributes])
    create = _index(index, attribute, key_schema)
    try:
        client.update_table(TableName=table, AttributeDefinitions=definitions,
                            GlobalSecondaryIndexUpdates=[{"Create": create}])
    except ClientError as exc:
        if "provisionedThroughput" not in str(exc):
            raise
        # dynalite wants a throughput even for on-demand tables; AWS refuses one there.
        create["ProvisionedThroughput"] = {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        client.update_table(TableName=table, AttributeDefinitions=definitions,
                            GlobalSecondaryIndexUpdates=[{"Create": create}])
    client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})


def _index_attributes(indexes: dict[str, str]) -> list[dict[str, str]]:
    return [{"AttributeName": a, "AttributeType": "S"} for a in sorted(set(indexes.values()))]


def _index(name: str, attribute: str, key_schema: list[tuple[str, str]]) -> dict:
    return {"IndexName": name, "KeySchema": [{"AttributeName": attribute, "KeyType": "HASH"},
                                              {"AttributeName": key_schema[0][0], "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"}}


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
