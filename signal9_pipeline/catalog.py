"""What the Dagster catalog says about the pipeline's stores: owners, table names and column schemas.

The column lists name every attribute the writers put in each DynamoDB table
(`assets_sync.changes`, `market_data.ingest`, `corporate_actions.actions`); a
test compares them with the items a real run writes, so the catalog cannot
drift from the code.
"""

import dagster as dg

from signal9_pipeline import settings
from signal9_pipeline.assets_sync.changes import ALPACA_FIELDS

OWNERS = ["team:signal9-market-data"]

ASSETS_TABLE_COLUMNS = [
    ("asset_id", "string", "partition key: ASSET#{symbol}"),
    *[(name, "any", "as Alpaca's /v2/assets answers it (id as alpaca_id, class as asset_class)") for name in ALPACA_FIELDS],
    ("content_hash", "string", "SHA-256 of the Alpaca fields: an item is written only when it changes"),
    ("data_source", "string", "alpaca"),
    ("created_at", "string", "ISO 8601 UTC"),
    ("updated_at", "string", "ISO 8601 UTC"),
    ("first_seen_at", "string", "when a sync first saw it listed"),
    ("last_seen_at", "string", "when a sync last saw it listed"),
    ("status_changed_at", "string", "ISO 8601 UTC"),
    ("status_history", "list", "the last 10 {status, at, note}; which dates it was listed on"),
    ("renamed_from", "string", "the symbol it was listed under before a rename (same alpaca_id)"),
    ("renamed_to", "string", "the symbol it is listed under after a rename"),
    ("pollenation_status", "string", "pending | done"),
    ("pollenation_pending", "string", "sparse index key of the pollenation-pending index while pending"),
    ("pollenation_pending_since", "string", "ISO 8601 UTC"),
    ("pollenated_at", "string", "ISO 8601 UTC"),
    ("pending_events", "list", "assetStatusChanged events not yet accepted by EventBridge (outbox)"),
    ("events_pending", "string", "sparse index key while pending_events is not empty"),
]

MARKET_DATA_TABLE_COLUMNS = [
    ("series", "string", "partition key: SYMBOL#TIMEFRAME (bars), SYMBOL#actions (corporate actions), "
                         "#PARTITION#TIMEFRAME (manifests)"),
    ("day", "string", "sort key: the bucket's first day YYYY-MM-DD; EX_DATE#ID for actions"),
    ("symbol", "string", ""),
    ("bars", "binary", "gzip of an Apache Arrow IPC stream (see README, Block format)"),
    ("bar_count", "int", ""),
    ("checksum", "string", "first 32 hex digits of SHA-256 over bars"),
    ("first_ts", "string", "first bar's start, ISO 8601 UTC"),
    ("last_ts", "string", "last bar's start, ISO 8601 UTC"),
    ("asset_class", "string", "us_equity | crypto"),
    ("timeframe", "string", "1Min ... 1Day"),
    ("feed", "string", "iex, sip, ... (+ joined when a bucket holds days of several); us for crypto"),
    ("adjustment", "string", "raw: bars are stored as traded and adjusted on read"),
    ("held_back", "list | string", "bars: held-back bars with reasons; actions: why the action is not applied"),
    ("version", "int", "optimistic-concurrency version of a bucket"),
    ("ingested_at", "string", "ISO 8601 UTC"),
    ("symbols", "list", "manifests: the symbols a partition holds"),
    ("action_id", "string", "corporate actions: Alpaca's id"),
    ("type", "string", "corporate actions: forward_split, cash_dividend, ..."),
    ("fields", "string", "corporate actions: the action as Alpaca sent it, JSON"),
    ("known", "bool", "corporate actions: a type this pipeline knows"),
    ("reference_close", "string", "cash dividends: SIP close of the session before the ex-date"),
]


def table_metadata(table_env: str, columns: list[tuple[str, str, str]]) -> dict:
    return {
        "dagster/table_name": settings.get(table_env),
        "dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(name, kind, description=text or None)
                                                         for name, kind, text in columns]),
    }
