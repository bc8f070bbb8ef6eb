"""The plan of one sync: which items of the assets table change, and how. Pure logic, no I/O.

The table keeps every asset it ever held and is keyed by symbol
(`ASSET#{symbol}`). Only Alpaca's own fields decide whether an item changed (a
content hash), so an unchanged universe plans zero writes. Everything a change
owes downstream - a pending pollenation for a new symbol, an
`assetStatusChanged` event - is written into the changed item itself (an
outbox), in the same put as the change, so a crash can never separate the two.
"""

from __future__ import annotations

import collections
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from signal9_pipeline.assets_sync.validation import AssetSchema

# The accepted asset's fields, in the validated schema's column order (content hashes depend on that order).
ALPACA_FIELDS = tuple(AssetSchema.to_schema().columns)
CHANGE_KINDS = ("new", "updated", "deactivated", "reactivated", "renamed", "unchanged")
HISTORY_LIMIT = 10
POLLENATION_PENDING = "pending"
POLLENATION_MARKER, EVENTS_MARKER = "pollenation_pending", "events_pending"
STATUS_EVENT = "assetStatusChanged"
DATA_SOURCE = "alpaca"
# The fields of a stored item that decide what a sync does with it: `plan_sync` reads no other field of an item it
# leaves as it is, so a sync scans only these and loads the whole items of the symbols it changes (`changed_symbols`).
DECISION_FIELDS = ("asset_id", "symbol", "status", "tradable", "alpaca_id", "content_hash", "renamed_from")


def asset_key(symbol: str) -> str:
    return f"ASSET#{symbol}"


def content_hash(fields: dict[str, Any]) -> str:
    canonical = json.dumps({k: fields.get(k) for k in ALPACA_FIELDS}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def is_listed(fields: dict[str, Any]) -> bool:
    """Active and tradable: what downstream services may trade and analyse."""
    return fields.get("status") == "active" and fields.get("tradable") is True


def was_listed_on(item: dict[str, Any], day_start: str, day_end: str) -> bool:
    """Whether the asset was listed at any moment of [day_start, day_end) (ISO-8601 UTC), by its status history.

    Before its first recorded status the asset counts as listed: the table learns of an
    asset when it is first seen listed, and Alpaca simply has no bars for days before it traded.
    """
    history = sorted(item.get("status_history") or [], key=lambda h: h.get("at", ""))
    before = [h for h in history if h.get("at", "") < day_start]
    during = [h for h in history if day_start <= h.get("at", "") < day_end]
    at_start = before[-1]["status"] == "active" if before else True
    return at_start or any(h.get("status") == "active" for h in during)


@dataclass(frozen=True)
class Change:
    symbol: str
    kind: str
    detail: str


@dataclass
class SyncPlan:
    puts: list[dict[str, Any]] = field(default_factory=list)
    counts: collections.Counter = field(default_factory=collections.Counter)
    changes: list[Change] = field(default_factory=list)
    listed_after: set[str] = field(default_factory=set)

    def record(self, kind: str, symbol: str, detail: str = "", item: dict[str, Any] | None = None) -> None:
        self.counts[kind] += 1
        if kind != "unchanged":
            self.changes.append(Change(symbol, kind, detail))
        if item is not None:
            self.puts.append(item)

    def changed_symbols(self) -> set[str]:
        """Every symbol whose item this plan writes or whose change it reports."""
        return {c.symbol for c in self.changes} | {p["symbol"] for p in self.puts}


def plan_sync(rows: Iterable[dict[str, Any]], existing: Iterable[dict[str, Any]], *, now: str,
              held_back: set[str] = frozenset()) -> SyncPlan:
    """What to write so the table reflects `rows` (validated assets, unique symbols).

    `existing` are the table's items; `held_back` are symbols whose rows were
    quarantined this time: their items stay exactly as they are.
    """
    listed = {r["symbol"]: r for r in rows}
    items = {i["symbol"]: i for i in existing if isinstance(i.get("symbol"), str)}
    renames = _renames(listed, items, held_back)
    renamed_from = {new: old for old, new in renames.items()}
    plan = SyncPlan(counts=collections.Counter({k: 0 for k in CHANGE_KINDS}))

    for symbol, row in listed.items():
        if symbol in renamed_from:
            old = renamed_from[symbol]
            if not _renamed_to_written(items.get(symbol), row, old):
                plan.record("renamed", symbol, f"renamed from {old}", _renamed_to_item(row, items.get(symbol), old, now))
                plan.counts["renamed"] -= 1  # one rename, two items
            plan.record("renamed", old, f"renamed to {symbol}", _renamed_from_item(items[old], symbol, now))
        elif symbol in items:
            _plan_existing(plan, items[symbol], row, now)
        elif is_listed(row):
            plan.record("new", symbol, f"{row['exchange']} {row['asset_class']}", _new_item(row, now))
    for symbol, item in items.items():
        if symbol in listed or symbol in renames or symbol in held_back:
            continue
        if is_listed(item):
            plan.record("deactivated", symbol, "missing from Alpaca's list",
                        _status_change(item, {**_alpaca_fields(item), "status": "inactive"}, now, "missing from Alpaca's list"))
        else:
            plan.counts["unchanged"] += 1

    plan.listed_after = {s for s, r in listed.items() if is_listed(r)} | {s for s in held_back if s in items and is_listed(items[s])}
    return plan


def plan_loading_changed(rows: Iterable[dict[str, Any]], decision_items: Iterable[dict[str, Any]],
                         load: Callable[[set[str]], list[dict[str, Any]]], *, now: str,
                         held_back: set[str] = frozenset()) -> SyncPlan:
    """`plan_sync` from items cut to DECISION_FIELDS, loading whole items (`load(symbols)`) only for what changes.

    The plan is made again after each load, until every item it writes or reports on was loaded whole, so no put
    is built from a cut item; a symbol `load` no longer finds is not in the table.
    """
    rows = list(rows)
    items = {i["symbol"]: i for i in decision_items if isinstance(i.get("symbol"), str)}
    whole: set[str] = set()
    while True:
        plan = plan_sync(rows, items.values(), now=now, held_back=held_back)
        needed = {s for s in plan.changed_symbols() if s in items} - whole
        if not needed:
            return plan
        loaded = {i["symbol"]: i for i in load(needed)}
        for symbol in needed:
            if symbol in loaded:
                items[symbol] = loaded[symbol]
            else:
                del items[symbol]
        whole |= needed


def _renames(listed: dict[str, dict], items: dict[str, dict], held_back: set[str]) -> dict[str, str]:
    """old symbol -> new symbol, for listed items whose Alpaca id now trades under another symbol."""
    listed_by_id = {r["alpaca_id"]: s for s, r in listed.items() if is_listed(r)}
    renames = {}
    for symbol, item in items.items():
        if symbol in held_back or not is_listed(item):
            continue
        new_symbol = listed_by_id.get(item.get("alpaca_id"))
        still_listed_here = symbol in listed and listed[symbol]["alpaca_id"] == item.get("alpaca_id") and is_listed(listed[symbol])
        if new_symbol and new_symbol != symbol and not still_listed_here:
            renames[symbol] = new_symbol
    return renames


def _plan_existing(plan: SyncPlan, item: dict[str, Any], row: dict[str, Any], now: str) -> None:
    symbol, was, will = row["symbol"], is_listed(item), is_listed(row)
    if was and not will:
        plan.record("deactivated", symbol, f"Alpaca status {row['status']}, tradable {row['tradable']}",
                    _status_change(item, row, now, f"Alpaca status {row['status']}"))
    elif will and not was:
        plan.record("reactivated", symbol, "listed again", _status_change(item, row, now, "listed again"))
    elif content_hash(row) != item.get("content_hash"):
        changed = [k for k in ALPACA_FIELDS if row.get(k) != item.get(k)]
        updated = {**_carry(item), **_alpaca_fields(row), "content_hash": content_hash(row), "updated_at": now,
                   **({"last_seen_at": now} if will else {})}
        plan.record("updated", symbol, ", ".join(changed), _with_outbox_marker(updated))
    else:
        plan.record("unchanged", symbol)


def _alpaca_fields(source: dict[str, Any]) -> dict[str, Any]:
    return {k: source.get(k) for k in ALPACA_FIELDS}


def _carry(item: dict[str, Any]) -> dict[str, Any]:
    """The item as stored, minus what is recomputed for every write."""
    return {k: v for k, v in item.items() if k not in ALPACA_FIELDS}


def _new_item(row: dict[str, Any], now: str, *, history_note: str = "listed") -> dict[str, Any]:
    item = {
        "asset_id": asset_key(row["symbol"]), **_alpaca_fields(row), "content_hash": content_hash(row),
        "data_source": DATA_SOURCE, "created_at": now, "updated_at": now, "first_seen_at": now, "last_seen_at": now,
        "status_changed_at": now, "status_history": [{"status": "active", "at": now, "note": history_note}],
        "pollenation_status": POLLENATION_PENDING, "pollenation_pending_since": now,
    }
    return _with_outbox_marker(item)


def _status_change(item: dict[str, Any], fields: dict[str, Any], now: str, note: str, **extra: Any) -> dict[str, Any]:
    old_status = "active" if is_listed(item) else "inactive"
    new_status = "active" if is_listed(fields) else "inactive"
    updated = {**_carry(item), **_alpaca_fields(fields), **extra, "content_hash": content_hash(fields), "updated_at": now,
               "status_changed_at": now}
    if new_status == "active":
        updated["last_seen_at"] = now
    updated["status_history"] = (list(item.get("status_history") or []) + [{"status": new_status, "at": now, "note": note}])[-HISTORY_LIMIT:]
    event_detail = {"symbol": item["symbol"], "oldStatus": old_status, "newStatus": new_status,
                    "alpacaId": item.get("alpaca_id"), "timestamp": now, "change": note}
    event_detail.update({k: v for k, v in extra.items() if k == "renamedTo"})
    updated["pending_events"] = list(item.get("pending_events") or []) + [_event(STATUS_EVENT, event_detail)]
    return _with_outbox_marker(updated)


def _renamed_from_item(item: dict[str, Any], new_symbol: str, now: str) -> dict[str, Any]:
    fields = {**_alpaca_fields(item), "status": "inactive"}
    return _status_change(item, fields, now, f"renamed to {new_symbol}", renamed_to=new_symbol, renamedTo=new_symbol) | {
        "renamed_to": new_symbol}


def _renamed_to_written(item: dict[str, Any] | None, row: dict[str, Any], old_symbol: str) -> bool:
    """The new symbol's item of this rename is already written: a run died between the rename's two puts.

    Writing it again would restart its pollenation (a new pending episode, so a second
    pollenationNeeded under a new id) if a sensor tick pollenated it in between.
    """
    return (item is not None and item.get("renamed_from") == old_symbol and is_listed(item)
            and item.get("content_hash") == content_hash(row))


def _renamed_to_item(row: dict[str, Any], existing: dict[str, Any] | None, old_symbol: str, now: str) -> dict[str, Any]:
    item = _new_item(row, now, history_note=f"renamed from {old_symbol}")
    if existing:  # the new symbol was held before (an old listing): keep its origin dates
        item.update({k: existing[k] for k in ("created_at", "first_seen_at") if k in existing})
    item["renamed_from"] = old_symbol
    return item


def _event(detail_type: str, detail: dict[str, Any]) -> dict[str, Any]:
    identity = json.dumps([detail_type, detail], sort_keys=True)
    return {"event_id": hashlib.sha256(identity.encode()).hexdigest()[:32], "detail_type": detail_type, "detail": detail}


def _with_outbox_marker(item: dict[str, Any]) -> dict[str, Any]:
    """Sparse index keys, present only while the item owes something downstream.

    `pollenation_pending` while its pollenation is pending, `events_pending`
    while it holds unpublished events; each consumer removes its own marker.
    """
    item = {k: v for k, v in item.items() if k not in (POLLENATION_MARKER, EVENTS_MARKER, "renamedTo")}
    if item.get("pollenation_status") == POLLENATION_PENDING:
        item[POLLENATION_MARKER] = "1"
    if item.get("pending_events"):
        item[EVENTS_MARKER] = "1"
    return item
