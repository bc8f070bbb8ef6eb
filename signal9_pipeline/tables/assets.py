"""The assets table (`SIGNAL9_ASSETS_TABLE`): companies by Alpaca id, symbols by their holders.

Two kinds of item share the partition key `asset_id`:
- `ID#{alpaca_id}`, the company (or crypto pair): Alpaca's fields as last seen, its listing status and
  status history, its symbol history (`symbols`: spans of New York dates, see `identity`), and what it still
  owes downstream (pending pollenation, unpublished events: the outbox, each with a sparse index marker).
  Identity is the Alpaca id, never the symbol string: a reused ticker is a new company, a renamed one keeps
  its item and history.
- `ASSET#{symbol}`, the symbol: its current holder's fields (the company listed under it now, else its last
  holder, shown inactive), which is what Signal9's other services read, plus `holders`, every company that
  held it with their dates. It is derived from the company items (`symbol_view`) and rewritten whenever they
  change (`view_of` says from what), so a crash between the two writes is repaired by the next sync.
- `SYNC#observed`: the observation day of the last sync (the earliest a change seen by the next one happened).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from signal9_pipeline.identity import Holder, spans_of

if TYPE_CHECKING:
    from signal9_pipeline.resources.dynamodb import DynamoDBResource

KEY = "asset_id"
KEY_SCHEMA = ([(KEY, "HASH")], [(KEY, "S")])
COMPANY_PREFIX, SYMBOL_PREFIX, SYNC_STATE_KEY = "ID#", "ASSET#", "SYNC#observed"
POLLENATION_MARKER, EVENTS_MARKER = "pollenation_pending", "events_pending"
POLLENATION_INDEX, EVENTS_INDEX = "pollenation-pending", "events-pending"
INDEXES = {POLLENATION_INDEX: POLLENATION_MARKER, EVENTS_INDEX: EVENTS_MARKER}  # sparse: only items owing something
POLLENATION_PENDING, POLLENATION_DONE = "pending", "done"
# What only the company item carries: its symbol history, its pollenation and its outbox.
COMPANY_ONLY = ("symbols", "revision", "pollenation_status", POLLENATION_MARKER, "pollenation_pending_since",
                "pollenation_reason", "pollenated_at", "pending_events", EVENTS_MARKER)
# The fields of a company that decide what a sync does with it, and what the market-data universe needs.
COMPANY_DECISION_FIELDS = (KEY, "alpaca_id", "symbol", "status", "tradable", "content_hash", "updated_at", "symbols",
                           "revision")
# Every write of a company item moves its revision on, so a put computed from a read fails if anyone wrote since.
REVISION = "revision"
_NEXT_REVISION = f"{REVISION} = if_not_exists({REVISION}, :zero) + :one"
LISTING_FIELDS = ("alpaca_id", "symbol", "asset_class", "status", "tradable", "status_history", "symbols")
VIEW_DECISION_FIELDS = (KEY, "symbol", "view_of")


class ConcurrentChangeError(RuntimeError):
    """A company item changed between a plan's read and its write (the sync beside a corporate-actions run dating a
    rename, or a pollenation run marking it done); the step retries, planning against what is stored now."""


def company_key(alpaca_id: str) -> str:
    return f"{COMPANY_PREFIX}{alpaca_id}"


def symbol_key(symbol: str) -> str:
    return f"{SYMBOL_PREFIX}{symbol}"


def is_listed(fields: dict[str, Any]) -> bool:
    """Active and tradable: what downstream services may trade and analyse."""
    return fields.get("status") == "active" and fields.get("tradable") is True


def view_hash(company: dict[str, Any], symbol: str, holders: list[Holder]) -> str:
    identity = json.dumps([company.get("alpaca_id"), company.get("updated_at"), symbol, [h.as_item() for h in holders]],
                          sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


def symbol_view(company: dict[str, Any], symbol: str, holders: list[Holder]) -> dict[str, Any]:
    """`ASSET#{symbol}` showing `company` (its current holder, or its last one) and every holder.

    A company that no longer holds the symbol shows it inactive, `renamed_to` its next symbol where it was renamed;
    `renamed_from` names the symbol it held before this one.
    """
    spans = spans_of(company.get("symbols"))
    view = {k: v for k, v in company.items() if k not in COMPANY_ONLY and k not in ("renamed_from", "renamed_to")}
    index = max((i for i, s in enumerate(spans) if s.symbol == symbol), default=None)
    if index is not None and index > 0:
        view["renamed_from"] = spans[index - 1].symbol
    if index is not None and spans[index].end is not None:
        view.update(status="inactive", tradable=False)
        if index + 1 < len(spans):
            view["renamed_to"] = spans[index + 1].symbol
    view.update({KEY: symbol_key(symbol), "symbol": symbol, "holders": [h.as_item() for h in holders],
                 "view_of": view_hash(company, symbol, holders)})
    return view


class AssetsTable:
    """Queries and writes of the assets table; `dynamodb` is the pipeline's DynamoDBResource."""

    def __init__(self, dynamodb: DynamoDBResource):
        self.dynamodb = dynamodb
        self.name = dynamodb.assets_table_name()

    # reads ------------------------------------------------------------------------------------
    def companies(self, projection: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        return self.dynamodb.scan(self.name, projection=_with_key(projection), key_prefix=(KEY, COMPANY_PREFIX))

    def views(self, projection: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        return self.dynamodb.scan(self.name, projection=_with_key(projection), key_prefix=(KEY, SYMBOL_PREFIX))

    def get_companies(self, alpaca_ids: Iterable[str], projection: Iterable[str] | None = None) -> list[dict[str, Any]]:
        keys = [{KEY: company_key(i)} for i in sorted(set(alpaca_ids))]
        return self.dynamodb.get_items(self.name, keys, projection=_with_key(projection))

    def get_views(self, symbols: Iterable[str], projection: Iterable[str] | None = None) -> list[dict[str, Any]]:
        keys = [{KEY: symbol_key(s)} for s in sorted(set(symbols))]
        return self.dynamodb.get_items(self.name, keys, projection=_with_key(projection))

    def view_sources(self) -> dict[str, str | None]:
        """symbol -> what its `ASSET#` item was derived from (`view_of`): whether it still shows the companies."""
        return {v["symbol"]: v.get("view_of") for v in self.views(VIEW_DECISION_FIELDS) if "symbol" in v}

    def holders(self, symbols: Iterable[str]) -> dict[str, list[Holder]]:
        """symbol -> the companies that held it (from its `ASSET#` item); symbols the table never held are absent."""
        return {v["symbol"]: [Holder.from_item(h) for h in v.get("holders") or []]
                for v in self.get_views(symbols, projection=["symbol", "holders"])}

    def listed_symbols(self) -> set[str]:
        return {c["symbol"] for c in self.companies(["symbol", "status", "tradable"]) if is_listed(c)}

    def last_observation_day(self) -> str | None:
        found = self.dynamodb.get_items(self.name, [{KEY: SYNC_STATE_KEY}])
        return found[0].get("day") if found else None

    def pending_pollenation(self) -> list[dict[str, Any]]:
        return list(self.dynamodb.query(self.name, IndexName=POLLENATION_INDEX,
                                        ProjectionExpression="alpaca_id, symbol",
                                        KeyConditionExpression=f"{POLLENATION_MARKER} = :one",
                                        ExpressionAttributeValues={":one": {"S": "1"}}))

    def owing_events(self) -> list[dict[str, Any]]:
        return list(self.dynamodb.query(self.name, IndexName=EVENTS_INDEX,
                                        KeyConditionExpression=f"{EVENTS_MARKER} = :one",
                                        ExpressionAttributeValues={":one": {"S": "1"}}))

    # writes -----------------------------------------------------------------------------------
    def put(self, items: Iterable[dict[str, Any]]) -> int:
        """Whole items with BatchWriteItem; the write requests made."""
        return self.dynamodb.put_items(self.name, items)

    def write(self, companies: list[tuple[dict[str, Any], dict[str, Any] | None]], views: list[dict[str, Any]]) -> int:
        """A plan's writes: new companies in batches, changed ones (item, as read) each under the condition that
        nobody wrote them since they were read, then the symbol items derived from them (a crash in between leaves
        those for the next sync to write). The write requests made."""
        requests = self.put_new_companies(item for item, read in companies if read is None)
        for item, read in companies:
            if read is not None:
                requests += 1
                if not self.put_company_if_unchanged(item, read):
                    raise ConcurrentChangeError(f"{item[KEY]} ({item.get('symbol')}) changed since it was read; "
                                                "the step retries and plans against what is stored now")
        return requests + self.put(views)

    def put_new_companies(self, items: Iterable[dict[str, Any]]) -> int:
        """Companies the table did not hold (only the sync creates them), in batches, at their first revision."""
        return self.put({**item, REVISION: 1} for item in items)

    def put_company_if_unchanged(self, item: dict[str, Any], read: dict[str, Any]) -> bool:
        """Put a company item (its revision moved on) unless someone wrote it since `read` was read."""
        revision = read.get(REVISION)
        item = {**item, REVISION: (revision or 0) + 1}
        if revision is None:
            return self.dynamodb.put_if(self.name, item, "attribute_not_exists(#r)", {"#r": REVISION})
        return self.dynamodb.put_if(self.name, item, "#r = :r", {"#r": REVISION}, {":r": revision})

    def record_observation(self, day: str, at: str) -> None:
        self.put([{KEY: SYNC_STATE_KEY, "day": day, "at": at}])

    def clear_events(self, item: dict[str, Any], remaining: list[dict[str, Any]]) -> bool:
        """Keep only `remaining` of the item's pending events, if none was appended since it was read."""
        return self.dynamodb.update_if(
            self.name, {KEY: item[KEY]},
            f"SET pending_events = :remaining, {_NEXT_REVISION}" if remaining
            else f"REMOVE pending_events, {EVENTS_MARKER} SET {_NEXT_REVISION}",
            # The list only grows between syncs: an unchanged size means nothing was appended since it was read.
            "size(pending_events) = :read", {":read": len(item["pending_events"]), ":zero": 0, ":one": 1,
                                             **({":remaining": remaining} if remaining else {})})

    def mark_pollenated(self, alpaca_id: str, now: str) -> bool:
        return self.dynamodb.update_if(
            self.name, {KEY: company_key(alpaca_id)},
            f"SET pollenation_status = :done, pollenated_at = :now, {_NEXT_REVISION} REMOVE {POLLENATION_MARKER}",
            "pollenation_status = :pending", {":done": POLLENATION_DONE, ":now": now, ":pending": POLLENATION_PENDING,
                                              ":zero": 0, ":one": 1})


def _with_key(projection: Iterable[str] | None) -> list[str] | None:
    return None if projection is None else list(dict.fromkeys([KEY, *projection]))
