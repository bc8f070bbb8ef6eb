"""What the Dagster catalog says about the pipeline's stores: owners, table names and column schemas.

The column lists name every attribute the writers put in each DynamoDB table
(`assets_sync.changes`, `market_data.buckets`, `corporate_actions.actions`); a
test compares them with the items a real run writes, so the catalog cannot
drift from the code.
"""

import dagster as dg

from signal9_pipeline import settings
from signal9_pipeline.assets_sync.changes import ALPACA_FIELDS

OWNERS = ["team:signal9-market-data"]

ASSETS_TABLE_COLUMNS = [
    ("asset_id", "string", "partition key: ID#{alpaca_id} (a company), ASSET#{symbol} (a symbol: its current "
                           "holder's fields and its holders), SYNC#observed (the last sync's observation day)"),
    *[(name, "any", "as Alpaca's /v2/assets answers it (id as alpaca_id, class as asset_class)")
      for name in ALPACA_FIELDS],
    ("content_hash", "string", "SHA-256 of the Alpaca fields: an item is written only when it changes"),
    ("data_source", "string", "alpaca"),
    ("created_at", "string", "ISO 8601 UTC"),
    ("updated_at", "string", "ISO 8601 UTC"),
    ("first_seen_at", "string", "when a sync first saw it listed"),
    ("last_seen_at", "string", "when a sync last saw it listed"),
    ("status_changed_at", "string", "ISO 8601 UTC"),
    ("status_history", "list", "the last 10 {status, at, note}; which dates it was listed on"),
    ("symbols", "list", "companies: the symbol history, {symbol, start, end, source, seen_after} in New York dates"),
    ("holders", "list", "symbols: every company that held it, {alpaca_id, start, end}"),
    ("view_of", "string", "symbols: what the item was derived from (rewritten when its companies change)"),
    ("revision", "int", "companies: moves on with every write; puts are conditional on the revision read"),
    ("renamed_from", "string", "symbols: the symbol its holder traded under before this one (same alpaca_id)"),
    ("renamed_to", "string", "symbols: the symbol its holder was renamed to"),
    ("day", "string", "SYNC#observed: the observation day (New York) of the last sync"),
    ("at", "string", "SYNC#observed: when the last sync looked, ISO 8601 UTC"),
    ("pollenation_status", "string", "pending | done"),
    ("pollenation_pending", "string", "sparse index key of the pollenation-pending index while pending"),
    ("pollenation_pending_since", "string", "ISO 8601 UTC"),
    ("pollenation_reason", "string", "new (a company new to the table: history loaded) | renamed (announced again)"),
    ("pollenated_at", "string", "ISO 8601 UTC"),
    ("pending_events", "list", "assetStatusChanged events not yet accepted by EventBridge (outbox)"),
    ("events_pending", "string", "sparse index key while pending_events is not empty"),
]

MARKET_DATA_TABLE_COLUMNS = [
    ("series", "string", "partition key: ALPACA_ID#TIMEFRAME (bars), ALPACA_ID#actions (corporate actions), "
                         "#PARTITION#TIMEFRAME (manifests), #LEDGER#ALPACA_ID#TIMEFRAME (ledger entries): filed by "
                         "company, never by symbol"),
    ("day", "string", "sort key: the bucket's first day YYYY-MM-DD; EX_DATE#ID for actions; BUCKET#VERSION#CHECKSUM16 "
                      "for ledger entries"),
    ("symbol", "string", "the symbol the bars were last asked under, or the action announced under"),
    ("alpaca_id", "string", "the company the bars or the action belong to"),
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
    ("run_id", "string", "the Dagster run that wrote the bucket or the ledger entry"),
    ("revisions", "list", "bars: the sort keys of the bucket's ledger entries, oldest first"),
    ("days_stored", "map", "bars: day -> when it was first stored (ISO 8601 UTC)"),
    ("ledger_from", "string", "bars: when the bucket's ledger began; reads known before it cannot be rebuilt"),
    ("withdrawn", "map", "bars: epoch second (text) -> when Alpaca stopped answering that bar; kept, left out "
                         "of reads"),
    ("changes", "binary", "ledger entries: gzip of an Arrow IPC stream, per changed bar its time, kind, old and "
                          "new values"),
    ("seen_at", "string", "ledger entries: when the change was seen, ISO 8601 UTC"),
    ("bucket", "string", "ledger entries: the bucket's sort key"),
    ("days", "list", "ledger entries: the days whose stored bars changed"),
    ("bars_restated", "int", "ledger entries: bars answered again with other values"),
    ("bars_added_late", "int", "ledger entries: bars of a stored day that appeared later"),
    ("bars_withdrawn", "int", "ledger entries: stored bars Alpaca no longer answers"),
    ("bars_restored", "int", "ledger entries: withdrawn bars answered again"),
    ("bars_refused", "int", "ledger entries: revisions held back as impossible; the stored bar stays"),
    ("refusals", "list", "ledger entries: the held-back revisions with their reasons"),
    ("recorded_at", "string", "corporate actions: when the pipeline first stored the action, ISO 8601 UTC"),
    ("asset_ids", "binary", "manifests: the companies a partition holds bars of, 16 bytes (the UUID) each, sorted"),
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
