"""DynamoDB access for the pipeline's two tables: scans, queries and batched writes that lose nothing.

`BatchWriteItem` may accept a batch only in part (`UnprocessedItems`) or be
throttled; both are retried with backoff until every item is written, or the
write fails with `DynamoWriteError` naming how many items are still unwritten.
Every write is a whole-item put computed from the source, so a run that fails
half-way is repaired by the next run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError
from dagster_aws.utils import ResourceWithBoto3Configuration

from signal9_pipeline import failpoints, settings
from signal9_pipeline.resources.configured import FromSettings, boto3_client
from signal9_pipeline.retry import AWS_BATCHES, Unfinished

BATCH_SIZE = 25
# Counted crash points around every write request (BatchWriteItem, UpdateItem): sent / answered.
WRITE_SENT, WRITE_ANSWERED = "dynamodb.write", "dynamodb.written"
THROTTLING_CODES = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}

_serializer = TypeSerializer()


class DynamoWriteError(RuntimeError):
    """Items could not be written after every retry; a rerun writes them (writes are idempotent puts)."""


def to_dynamo(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in item.items() if v is not None}


def from_dynamo(item: dict[str, Any]) -> dict[str, Any]:
    """An item as plain Python values: numbers as int (or float), binaries as bytes.

    Written out rather than boto3's TypeDeserializer, which goes through Decimal and costs eight times as much: a
    scan of the assets table (24,000 items with their status and symbol histories) took 5.1 s to decode that way.
    """
    return {k: _value(v) for k, v in item.items()}


def _value(typed: dict[str, Any]) -> Any:
    ((kind, raw),) = typed.items()
    if kind == "S" or kind == "BOOL":
        return raw
    if kind == "N":
        return _number(raw)
    if kind == "M":
        return {k: _value(v) for k, v in raw.items()}
    if kind == "L":
        return [_value(v) for v in raw]
    if kind == "B":
        return bytes(raw)
    if kind == "NULL":
        return None
    if kind == "SS":
        return set(raw)
    if kind == "NS":
        return {_number(n) for n in raw}
    if kind == "BS":
        return {bytes(b) for b in raw}
    raise TypeError(f"unknown DynamoDB type {kind!r}")


def _number(raw: str) -> int | float:
    """The pipeline stores integers as numbers; anything else read back is a float."""
    try:
        return int(raw)
    except ValueError:
        return float(raw)


class DynamoDBResource(FromSettings, ResourceWithBoto3Configuration):
    """The assets and market-data tables, on dagster_aws' boto3 configuration (unset fields: boto3's own chain)."""

    SETTINGS: ClassVar[dict[str, str]] = {"assets_table": "SIGNAL9_ASSETS_TABLE",
                                          "market_data_table": "SIGNAL9_MARKET_DATA_TABLE"}

    assets_table: str = settings.default("SIGNAL9_ASSETS_TABLE")
    market_data_table: str = settings.default("SIGNAL9_MARKET_DATA_TABLE")
    max_attempts: int = 8  # botocore's adaptive retries of throttling, under the batches' own backoff

    def assets_table_name(self) -> str:
        return self.assets_table

    def market_data_table_name(self) -> str:
        return self.market_data_table

    def client(self):
        """The process's client, shared by the bars writer's threads (its pool holds a connection for each).
        DynamoDB validates every request itself; botocore's own pass over each item costs a fifth of a put's
        client CPU, and a universe backfill sends 12,062 of them."""
        return boto3_client(self, "dynamodb", shared=True, retry_mode="adaptive", max_pool_connections=16,
                            parameter_validation=False)

    def scan(self, table: str, *, projection: list[str] | None = None,
             key_prefix: tuple[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of `table` (optionally only some attributes, only those whose attribute starts with a prefix)."""
        kwargs: dict[str, Any] = {"TableName": table}
        names: dict[str, str] = {}
        if projection:
            kwargs["ProjectionExpression"] = ", ".join(f"#a{i}" for i in range(len(projection)))
            names.update({f"#a{i}": name for i, name in enumerate(projection)})
        if key_prefix:
            names["#p"] = key_prefix[0]
            kwargs["FilterExpression"] = "begins_with(#p, :p)"
            kwargs["ExpressionAttributeValues"] = {":p": {"S": key_prefix[1]}}
        if names:
            kwargs["ExpressionAttributeNames"] = names
        for page in self.client().get_paginator("scan").paginate(**kwargs):
            for item in page["Items"]:
                yield from_dynamo(item)

    def query(self, table: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        for page in self.client().get_paginator("query").paginate(TableName=table, **kwargs):
            for item in page["Items"]:
                yield from_dynamo(item)

    def get_items(self, table: str, keys: list[dict[str, Any]],
                  projection: list[str] | None = None) -> list[dict[str, Any]]:
        """The items with these keys (BatchGetItem, 100 per request, unprocessed keys retried); missing ones omitted."""
        client, found = self.client(), []
        request: dict[str, Any] = {"ConsistentRead": True}
        if projection:
            request["ProjectionExpression"] = ", ".join(f"#a{i}" for i in range(len(projection)))
            request["ExpressionAttributeNames"] = {f"#a{i}": name for i, name in enumerate(projection)}
        for start in range(0, len(keys), 100):
            pending = [to_dynamo(k) for k in keys[start : start + 100]]
            try:
                for attempt in AWS_BATCHES.retrying():
                    with attempt:
                        answer = client.batch_get_item(RequestItems={table: {"Keys": pending, **request}})
                        found += [from_dynamo(i) for i in answer.get("Responses", {}).get(table, [])]
                        pending = answer.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
                        if pending:
                            raise Unfinished()
            except Unfinished:
                raise DynamoWriteError(f"{len(pending)} keys of {table} still unprocessed after "
                                       f"{AWS_BATCHES.attempts} attempts") from None
        return found

    def update_if(self, table: str, key: dict[str, Any], update: str, condition: str, values: dict[str, Any],
                  names: dict[str, str] | None = None) -> bool:
        """One conditional UpdateItem; False when the condition no longer holds (someone else changed the item)."""
        failpoints.hit_nth(WRITE_SENT)
        try:
            self.client().update_item(TableName=table, Key=to_dynamo(key), UpdateExpression=update,
                                      ConditionExpression=condition, ExpressionAttributeValues=to_dynamo(values),
                                      **({"ExpressionAttributeNames": names} if names else {}))
            applied = True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            applied = False
        failpoints.hit_nth(WRITE_ANSWERED)
        return applied

    def put_if(self, table: str, item: dict[str, Any], condition: str, names: dict[str, str],
               values: dict[str, Any] | None = None) -> bool:
        """One conditional PutItem, retried while throttled; False when the condition no longer holds (someone else
        wrote the item first)."""
        request = {"TableName": table, "Item": to_dynamo(item), "ConditionExpression": condition,
                   "ExpressionAttributeNames": names,
                   **({"ExpressionAttributeValues": to_dynamo(values)} if values else {})}
        try:
            for attempt in AWS_BATCHES.retrying():
                with attempt:
                    return self._put_once(table, request)
        except Unfinished:
            raise DynamoWriteError(f"an item of {table} still throttled after {AWS_BATCHES.attempts} attempts; "
                                   "the next run writes it") from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _put_once(self, table: str, request: dict[str, Any]) -> bool:
        failpoints.hit_nth(WRITE_SENT)
        try:
            self.client().put_item(**request)
            applied = True
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in THROTTLING_CODES:
                raise Unfinished() from None
            if code != "ConditionalCheckFailedException":
                raise DynamoWriteError(f"writing an item to {table} failed: {exc}") from exc
            applied = False
        except BotoCoreError as exc:
            raise DynamoWriteError(f"writing an item to {table} failed: {type(exc).__name__}: {exc}") from exc
        failpoints.hit_nth(WRITE_ANSWERED)
        return applied

    def put_items(self, table: str, items: Iterable[dict[str, Any]]) -> int:
        """Write every item with BatchWriteItem (25 per request); returns the write requests made."""
        return self.write_batches(table, ({"PutRequest": {"Item": to_dynamo(item)}} for item in items))

    def write_batches(self, table: str, requests: Iterable[dict[str, Any]]) -> int:
        client, sent, batch = self.client(), 0, []
        for request in requests:
            batch.append(request)
            if len(batch) == BATCH_SIZE:
                sent += _write_batch(client, table, batch)
                batch = []
        if batch:
            sent += _write_batch(client, table, batch)
        return sent


def _write_batch(client, table: str, batch: list[dict]) -> int:
    """One batch until DynamoDB has taken all of it; returns the BatchWriteItem calls it took."""
    pending, calls = batch, 0
    try:
        for attempt in AWS_BATCHES.retrying():
            with attempt:
                calls += 1
                try:
                    failpoints.hit_nth(WRITE_SENT)
                    answer = client.batch_write_item(RequestItems={table: pending})
                    failpoints.hit_nth(WRITE_ANSWERED)
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") not in THROTTLING_CODES:
                        raise DynamoWriteError(f"writing {len(pending)} items to {table} failed: {exc}") from exc
                    raise Unfinished() from None
                except BotoCoreError as exc:
                    raise DynamoWriteError(f"writing {len(pending)} items to {table} failed: "
                                           f"{type(exc).__name__}: {exc}") from exc
                pending = answer.get("UnprocessedItems", {}).get(table, [])
                if pending:
                    raise Unfinished()
                return calls
    except Unfinished:
        raise DynamoWriteError(f"{len(pending)} items to {table} still unprocessed after "
                               f"{AWS_BATCHES.attempts} attempts; the next run writes them") from None
    raise AssertionError("unreachable: the last attempt returns or raises")
