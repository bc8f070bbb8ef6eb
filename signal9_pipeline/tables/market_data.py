"""The market-data table (`SIGNAL9_MARKET_DATA_TABLE`): bars and corporate actions filed by company.

Partition key `series`, sort key `day`. Three kinds of item:
- bars: `series = {alpaca_id}#{timeframe}`, `day` = the first day of the item's bucket (`market_data.timeframes`).
  A series belongs to exactly one company, whatever symbols it traded under: a reused ticker's companies have
  a series each, a renamed company keeps its one. To read a symbol, resolve it first (`ASSET#{symbol}`'s
  `holders` in the assets table, as of a date) and read that company's series.
- corporate actions: `series = {alpaca_id}#actions`, `day = EX_DATE#ACTION_ID`.
- ledger entries: `series = #LEDGER#{alpaca_id}#{timeframe}`, `day = {bucket}#{version:010d}#{checksum16}`: what one
  write of a bucket changed in the bars stored before it (`market_data.ledger`), written before the bucket, never
  rewritten. The bucket lists its entries' `day`s in `revisions`; an entry no bucket lists lost a write race and
  is ignored. Bucket items also carry `days_stored` (day -> when first stored), `ledger_from` (when the first
  write that kept a ledger happened) and `withdrawn` (epoch second, as text -> when Alpaca stopped answering that
  bar): a withdrawn bar stays in the block, and readers leave it out.
- partition manifests: `series = #PARTITION#{timeframe}`, `day` = the partition's date, `asset_ids` the companies
  it holds bars of (it only ever gains some), packed: each id's 16 bytes (the UUID, big-endian), concatenated in
  order. As text, 12,062 ids would take 470 KB, over DynamoDB's 400 KB item; packed they take 193 KB.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from signal9_pipeline.resources.dynamodb import DynamoDBResource

KEY_SCHEMA = ([("series", "HASH"), ("day", "RANGE")], [("series", "S"), ("day", "S")])
MANIFEST_PREFIX, LEDGER_PREFIX, ACTIONS = "#PARTITION#", "#LEDGER#", "actions"
MANIFESTS_AT_ONCE = 10  # partition manifests read and written together (a universe manifest lists 12,000 companies)


def bars_series(alpaca_id: str, timeframe: str) -> str:
    return f"{alpaca_id}#{timeframe}"


def actions_series(alpaca_id: str) -> str:
    return f"{alpaca_id}#{ACTIONS}"


def ledger_series(alpaca_id: str, timeframe: str) -> str:
    return f"{LEDGER_PREFIX}{alpaca_id}#{timeframe}"


def ledger_key(bucket: str, version: int, checksum: str) -> str:
    """An entry's sort key: its bucket, the bucket version it produced, its block's checksum (two runs racing for one
    version write two entries, and the bucket lists the winner's)."""
    return f"{bucket}#{version:010d}#{checksum[:16]}"


def manifest_series(timeframe: str) -> str:
    return f"{MANIFEST_PREFIX}{timeframe}"


def pack_ids(asset_ids: Iterable[str]) -> bytes:
    """Asset ids (UUIDs) as a manifest stores them: 16 bytes each, sorted, concatenated."""
    return b"".join(uuid.UUID(i).bytes for i in sorted(set(asset_ids)))


def unpack_ids(packed: bytes | None) -> set[str]:
    packed = bytes(packed or b"")
    return {str(uuid.UUID(bytes=packed[i:i + 16])) for i in range(0, len(packed), 16)}


def is_bars(item: dict[str, Any]) -> bool:
    series = item.get("series", "")
    return not series.startswith("#") and not series.endswith(f"#{ACTIONS}")


def company_of(series: str) -> str:
    """The asset id of a bars or actions series."""
    return series.rsplit("#", 1)[0]


class MarketDataTable:
    """Queries and writes of the market-data table; `dynamodb` is the pipeline's DynamoDBResource."""

    def __init__(self, dynamodb: DynamoDBResource):
        self.dynamodb = dynamodb
        self.name = dynamodb.market_data_table_name()

    # bars -------------------------------------------------------------------------------------
    def get(self, keys: Iterable[tuple[str, str]],
            projection: list[str] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        """Items by (series, day), read consistently; missing ones absent."""
        found = self.dynamodb.get_items(self.name, [{"series": s, "day": d} for s, d in keys], projection=projection)
        return {(i["series"], i["day"]): i for i in found}

    def put_if(self, item: dict[str, Any], condition: str, names: dict[str, str],
               values: dict[str, Any] | None = None) -> bool:
        return self.dynamodb.put_if(self.name, item, condition, names, values)

    def bars_items(self, alpaca_id: str, timeframe: str, first_day: str, last_day: str,
                   projection: str = "#d, bars, checksum, asset_class, feed, version, withdrawn"
                   ) -> Iterator[dict[str, Any]]:
        """The company's bar items whose bucket starts within [first_day, last_day], one paginated Query."""
        return self.dynamodb.query(self.name, ProjectionExpression=projection,
                                   ExpressionAttributeNames={"#s": "series", "#d": "day"},
                                   KeyConditionExpression="#s = :series AND #d BETWEEN :first AND :last",
                                   ExpressionAttributeValues={":series": {"S": bars_series(alpaca_id, timeframe)},
                                                              ":first": {"S": first_day}, ":last": {"S": last_day}})

    def ledger_entries(self, alpaca_id: str, timeframe: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The ledger entries with these sort keys (a bucket's `revisions`), read consistently; missing ones absent."""
        series = ledger_series(alpaca_id, timeframe)
        return {i["day"]: i for i in self.get((series, k) for k in keys).values()}

    # corporate actions ------------------------------------------------------------------------
    def actions_of(self, alpaca_id: str) -> list[dict[str, Any]]:
        return list(self.dynamodb.query(self.name, ExpressionAttributeNames={"#s": "series"},
                                        KeyConditionExpression="#s = :series",
                                        ExpressionAttributeValues={":series": {"S": actions_series(alpaca_id)}}))

    def put(self, items: Iterable[dict[str, Any]]) -> int:
        return self.dynamodb.put_items(self.name, items)

    def keys(self) -> list[tuple[str, str]]:
        """Every item's (series, day): a scan of the keys only."""
        return [(i["series"], i["day"]) for i in self.dynamodb.scan(self.name, projection=["series", "day"])]

    def delete(self, keys: Iterable[tuple[str, str]]) -> int:
        from signal9_pipeline.resources.dynamodb import to_dynamo

        return self.dynamodb.write_batches(self.name, ({"DeleteRequest": {"Key": to_dynamo({"series": s, "day": d})}}
                                                       for s, d in keys))

    # partition manifests ----------------------------------------------------------------------
    def manifests(self, timeframe: str, days: list[str]) -> dict[str, set[str]]:
        """day -> the asset ids its partition holds bars of."""
        found = self.get([(manifest_series(timeframe), d) for d in days])
        return {day: unpack_ids(item.get("asset_ids")) for (_, day), item in found.items()}

    def put_manifests(self, timeframe: str, asset_ids_by_day: dict[str, set[str]]) -> int:
        return self.put({"series": manifest_series(timeframe), "day": day, "asset_ids": pack_ids(ids)}
                        for day, ids in sorted(asset_ids_by_day.items()))
