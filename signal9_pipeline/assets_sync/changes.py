"""The plan of one sync: which companies and symbols of the assets table change, and how. Pure logic, no I/O.

A company is its Alpaca id (`tables.assets`): a listing under an id the table has not seen is a new company,
even under a symbol another company held before; a known id under another symbol is a rename, which keeps the
company's item and history. Only Alpaca's own fields decide whether a company changed (a content hash), so an
unchanged universe plans zero writes. Everything a change owes downstream - a pending pollenation, an
`assetStatusChanged` event - is written into the company item itself (an outbox), in the same put as the
change, so a crash can never separate the two. The symbol items (`ASSET#{symbol}`) are derived from the
companies and planned wherever they no longer show what the companies say.
"""

from __future__ import annotations

import collections
import hashlib
import json
from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass, field
from typing import Any

from signal9_pipeline.assets_sync.validation import AssetSchema
from signal9_pipeline.identity import (
    FROM_SYNC,
    Span,
    current_holder,
    day_before,
    holder_on,
    holders_by_symbol,
    name_changed,
    released,
    renamed,
    spans_item,
    spans_of,
)
from signal9_pipeline.tables.assets import (
    EVENTS_MARKER,
    POLLENATION_MARKER,
    POLLENATION_PENDING,
    REVISION,
    company_key,
    is_listed,
    symbol_view,
    view_hash,
)

# The accepted asset's fields, in the validated schema's column order (content hashes depend on that order).
ALPACA_FIELDS = tuple(AssetSchema.to_schema().columns)
CHANGE_KINDS = ("new", "updated", "deactivated", "reactivated", "renamed", "unchanged")
HISTORY_LIMIT = 10
STATUS_EVENT = "assetStatusChanged"
DATA_SOURCE = "alpaca"
NEW, RENAMED = "new", "renamed"  # why a company's pollenation is pending


def content_hash(fields: dict[str, Any]) -> str:
    canonical = json.dumps({k: fields.get(k) for k in ALPACA_FIELDS}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def was_listed_on(item: dict[str, Any], day: str, day_start: str, day_end: str) -> bool:
    """Whether the company was listed at any moment of the New York date `day` ([day_start, day_end), ISO-8601 UTC).

    By its status history; before its first recorded status it counts as listed (the table learns of a company
    when it is first seen listed, and Alpaca simply has no bars for days before it traded), except before the
    first date of its symbol history where that is known (a company that took over a ticker).
    """
    spans = spans_of(item.get("symbols"))
    if spans and spans[0].start is not None and day < spans[0].start:
        return False
    history = sorted(item.get("status_history") or [], key=lambda h: h.get("at", ""))
    before = [h for h in history if h.get("at", "") < day_start]
    during = [h for h in history if day_start <= h.get("at", "") < day_end]
    at_start = before[-1]["status"] == "active" if before else True
    return at_start or any(h.get("status") == "active" for h in during)


@dataclass(frozen=True)
class Observation:
    """When a sync looked: the stamp it writes, its observation day, and the previous sync's (None: the first)."""

    now: str
    day: str
    seen_after: str | None = None


@dataclass(frozen=True)
class Change:
    symbol: str
    kind: str
    detail: str


@dataclass
class SyncPlan:
    companies: list[tuple[dict[str, Any], dict[str, Any] | None]] = field(default_factory=list)  # (item, as read)
    views: list[dict[str, Any]] = field(default_factory=list)
    counts: collections.Counter = field(default_factory=lambda: collections.Counter({k: 0 for k in CHANGE_KINDS}))
    changes: list[Change] = field(default_factory=list)
    listed_after: set[str] = field(default_factory=set)
    read_whole: set[str] = field(default_factory=set)  # ids of stored companies the plan copied whole

    def record(self, kind: str, symbol: str, detail: str = "") -> None:
        if kind in self.counts:
            self.counts[kind] += 1
        if kind != "unchanged":
            self.changes.append(Change(symbol, kind, detail))


def plan_sync(rows: Iterable[dict[str, Any]], companies: Iterable[dict[str, Any]], views: dict[str, str | None],
              seen: Observation, *, held_back_ids: Set[str] = frozenset(),
              held_back_symbols: Set[str] = frozenset()) -> SyncPlan:
    """What to write so the table reflects `rows` (validated assets: unique ids, unique listed symbols).

    `companies` are the table's company items, `views` its symbol items' `view_of` by symbol; `held_back_*` are
    the ids and symbols of rows quarantined this time: their companies stay exactly as they are.
    """
    stored = {c["alpaca_id"]: c for c in companies if isinstance(c.get("alpaca_id"), str)}
    after, plan, takers = dict(stored), SyncPlan(), []
    rows_by_id = {r["alpaca_id"]: r for r in rows}
    taken = {span.symbol for c in stored.values() for span in spans_of(c.get("symbols"))}
    for alpaca_id, row in rows_by_id.items():
        company = stored.get(alpaca_id)
        if company is None:
            if is_listed(row):
                after[alpaca_id] = _new_company(row, seen, reused=row["symbol"] in taken)
                takers.append((alpaca_id, row["symbol"], seen.day))
                plan.record("new", row["symbol"], f"{row['exchange']} {row['asset_class']}" + (
                    ", a symbol another company held before" if row["symbol"] in taken else ""))
            continue
        followed = _follow(plan, company, row, seen)
        if followed is not None:
            after[alpaca_id] = followed
            if followed["symbol"] != company["symbol"]:
                takers.append((alpaca_id, followed["symbol"], seen.day))
    for alpaca_id, company in stored.items():
        if alpaca_id in rows_by_id or alpaca_id in held_back_ids or company.get("symbol") in held_back_symbols:
            continue
        if is_listed(company):
            note = "missing from Alpaca's list"
            after[alpaca_id] = _status_change(company, {**_alpaca_fields(company), "status": "inactive"},
                                              seen.now, note)
            plan.record("deactivated", company["symbol"], note)
        else:
            plan.counts["unchanged"] += 1
    _release_taken_symbols(plan, takers, after, seen.now)
    _plan_writes(plan, stored, after, views)
    return plan


def plan_name_changes(renames: Iterable[tuple[str, str, str]], companies: Iterable[dict[str, Any]],
                      views: dict[str, str | None], now: str) -> SyncPlan:
    """Date renames by Alpaca's `name_changes` actions, (old symbol, new symbol, effective day) each.

    The company is the one that held the old symbol the day before; a rename the sync recorded gets the action's
    date on both sides, one it has not seen yet is recorded (the sync then finds its spans already right). A new
    symbol held by another company until then passes on at that date.
    """
    stored = {c["alpaca_id"]: c for c in companies if isinstance(c.get("alpaca_id"), str)}
    after, plan, takers = dict(stored), SyncPlan(), []
    holders = holders_by_symbol((i, spans_of(c.get("symbols"))) for i, c in stored.items())
    for old, new, day in renames:
        holder = holder_on(holders.get(old, []), day_before(day))
        if holder is None:
            continue
        company = after[holder.alpaca_id]
        spans = spans_of(company.get("symbols"))
        dated = name_changed(spans, old, new, day)
        if dated is None or dated == spans:
            continue
        after[holder.alpaca_id] = {**company, "symbols": spans_item(dated), "updated_at": now}
        plan.changes.append(Change(new, "rename_dated", f"renamed from {old}, effective {day} (Alpaca's name_changes)"))
        takers.append((holder.alpaca_id, new, day))
    _release_taken_symbols(plan, takers, after, now)
    _plan_writes(plan, stored, after, views)
    return plan


def plan_symbol_items(companies: Iterable[dict[str, Any]], views: dict[str, str | None]) -> SyncPlan:
    """The symbol items that no longer show what the (whole) companies say, and nothing else."""
    stored = {c["alpaca_id"]: c for c in companies if isinstance(c.get("alpaca_id"), str)}
    plan = SyncPlan()
    _plan_writes(plan, stored, dict(stored), views)
    return plan


def _plan_writes(plan: SyncPlan, stored: dict[str, dict], after: dict[str, dict], views: dict[str, str | None]) -> None:
    changed = {i for i in after if after[i] is not stored.get(i)}
    plan.companies = [(after[i], stored.get(i)) for i in sorted(changed)]
    plan.read_whole = changed & set(stored)
    _plan_views(plan, after, views, stored)
    plan.listed_after = {c["symbol"] for c in after.values() if is_listed(c)}


def plan_loading_whole(planner: Callable[[Iterable[dict[str, Any]]], SyncPlan],
                       decision_items: Iterable[dict[str, Any]],
                       load: Callable[[set[str]], list[dict[str, Any]]]) -> SyncPlan:
    """A plan (`planner(companies)`) from company items cut to their decision fields, loading whole items
    (`load(ids)`) only for what it writes or shows; the plan is made again after each load, until every item it
    copies was loaded whole."""
    items = {i["alpaca_id"]: i for i in decision_items if isinstance(i.get("alpaca_id"), str)}
    whole: set[str] = set()
    while True:
        plan = planner(items.values())
        needed = plan.read_whole - whole
        if not needed:
            return plan
        for item in load(needed):
            items[item["alpaca_id"]] = item
        whole |= needed


def _follow(plan: SyncPlan, company: dict[str, Any], row: dict[str, Any], seen: Observation) -> dict[str, Any] | None:
    """The company's item after this sync's row of it, or None when nothing changed."""
    symbol, old_symbol, was, will = row["symbol"], company["symbol"], is_listed(company), is_listed(row)
    if symbol != old_symbol:
        plan.record("renamed", symbol, f"renamed from {old_symbol}")
        return _renamed(company, row, seen)
    if was and not will:
        note = f"Alpaca status {row['status']}"
        plan.record("deactivated", symbol, f"{note}, tradable {row['tradable']}")
        return _status_change(company, row, seen.now, note)
    if will and not was:
        plan.record("reactivated", symbol, "listed again")
        return _status_change(company, row, seen.now, "listed again")
    if content_hash(row) != company.get("content_hash"):
        plan.record("updated", symbol, ", ".join(k for k in ALPACA_FIELDS if row.get(k) != company.get(k)))
        return _with_outbox_marker({**_carry(company), **_alpaca_fields(row), "content_hash": content_hash(row),
                                    "updated_at": seen.now, **({"last_seen_at": seen.now} if will else {})})
    plan.counts["unchanged"] += 1
    return None


def _release_taken_symbols(plan: SyncPlan, takers: list[tuple[str, str, str]], after: dict[str, dict],
                           now: str) -> None:
    """A symbol a company took (listed new, renamed into) on a day ends there for whoever held it until then."""
    holding: dict[str, list[str]] = collections.defaultdict(list)
    for alpaca_id, company in after.items():
        for span in spans_of(company.get("symbols")):
            if span.end is None:
                holding[span.symbol].append(alpaca_id)
    for taker_id, symbol, day in takers:
        for other_id in holding.get(symbol, ()):
            if other_id == taker_id:
                continue
            other = after[other_id]
            after[other_id] = {**other, "symbols": spans_item(released(spans_of(other.get("symbols")), symbol, day)),
                               "updated_at": now}
            plan.changes.append(Change(symbol, "passed_on", f"held by {other_id} until {day}, now by {taker_id}"))


def _plan_views(plan: SyncPlan, after: dict[str, dict], views: dict[str, str | None], stored: dict[str, dict]) -> None:
    holders = holders_by_symbol((i, spans_of(c.get("symbols"))) for i, c in after.items())
    listed = {i for i, c in after.items() if is_listed(c)}
    for symbol, those in sorted(holders.items()):
        holder = current_holder(those, listed)
        assert holder is not None  # a symbol in `holders` has at least one
        company = after[holder.alpaca_id]
        if views.get(symbol) != view_hash(company, symbol, those):
            plan.views.append(symbol_view(company, symbol, those))
            if company is stored.get(holder.alpaca_id):
                plan.read_whole.add(holder.alpaca_id)


def _alpaca_fields(source: dict[str, Any]) -> dict[str, Any]:
    return {k: source.get(k) for k in ALPACA_FIELDS}


def _carry(item: dict[str, Any]) -> dict[str, Any]:
    """The item as stored, minus what is recomputed for every write."""
    return {k: v for k, v in item.items() if k not in ALPACA_FIELDS and k != REVISION}


def _new_company(row: dict[str, Any], seen: Observation, *, reused: bool) -> dict[str, Any]:
    # A symbol no company held before may have traded before this listing; one that passes on starts here.
    span = Span(row["symbol"], seen.day, None, FROM_SYNC, seen.seen_after) if reused else Span(row["symbol"])
    item = {
        "asset_id": company_key(row["alpaca_id"]), **_alpaca_fields(row), "content_hash": content_hash(row),
        "data_source": DATA_SOURCE, "created_at": seen.now, "updated_at": seen.now, "first_seen_at": seen.now,
        "last_seen_at": seen.now, "status_changed_at": seen.now,
        "status_history": [{"status": "active", "at": seen.now, "note": "listed"}], "symbols": spans_item([span]),
        "pollenation_status": POLLENATION_PENDING, "pollenation_pending_since": seen.now, "pollenation_reason": NEW,
    }
    return _with_outbox_marker(item)


def _renamed(company: dict[str, Any], row: dict[str, Any], seen: Observation) -> dict[str, Any]:
    """A rename keeps the company; the old symbol's subscribers hear it went inactive, the new one is pollenated."""
    old, new = company["symbol"], row["symbol"]
    spans = renamed(spans_of(company.get("symbols")), new, seen.day, seen.seen_after)
    item = {**_carry(company), **_alpaca_fields(row), "content_hash": content_hash(row), "updated_at": seen.now,
            "symbols": spans_item(spans), **({"last_seen_at": seen.now} if is_listed(row) else {})}
    if is_listed(company) != is_listed(row):
        item = _status_change(item, row, seen.now, f"Alpaca status {row['status']} (renamed from {old})")
    if item.get("pollenation_status") != POLLENATION_PENDING:  # fundamentals are keyed by symbol
        item.update(pollenation_status=POLLENATION_PENDING, pollenation_pending_since=seen.now,
                    pollenation_reason=RENAMED)
    detail = {"symbol": old, "oldStatus": "active" if is_listed(company) else "inactive", "newStatus": "inactive",
              "alpacaId": company.get("alpaca_id"), "timestamp": seen.now, "change": f"renamed to {new}",
              "renamedTo": new}
    item["pending_events"] = list(item.get("pending_events") or []) + [_event(STATUS_EVENT, detail)]
    return _with_outbox_marker(item)


def _status_change(item: dict[str, Any], fields: dict[str, Any], now: str, note: str) -> dict[str, Any]:
    old_status = "active" if is_listed(item) else "inactive"
    new_status = "active" if is_listed(fields) else "inactive"
    updated = {**_carry(item), **_alpaca_fields(fields), "content_hash": content_hash(fields), "updated_at": now,
               "status_changed_at": now}
    if new_status == "active":
        updated["last_seen_at"] = now
    updated["status_history"] = (list(item.get("status_history") or [])
                                 + [{"status": new_status, "at": now, "note": note}])[-HISTORY_LIMIT:]
    event_detail = {"symbol": fields["symbol"], "oldStatus": old_status, "newStatus": new_status,
                    "alpacaId": item.get("alpaca_id"), "timestamp": now, "change": note}
    updated["pending_events"] = list(item.get("pending_events") or []) + [_event(STATUS_EVENT, event_detail)]
    return _with_outbox_marker(updated)


def _event(detail_type: str, detail: dict[str, Any]) -> dict[str, Any]:
    identity = json.dumps([detail_type, detail], sort_keys=True)
    return {"event_id": hashlib.sha256(identity.encode()).hexdigest()[:32], "detail_type": detail_type,
            "detail": detail}


def _with_outbox_marker(item: dict[str, Any]) -> dict[str, Any]:
    """Sparse index keys, present only while the item owes something downstream.

    `pollenation_pending` while its pollenation is pending, `events_pending`
    while it holds unpublished events; each consumer removes its own marker.
    """
    item = {k: v for k, v in item.items() if k not in (POLLENATION_MARKER, EVENTS_MARKER)}
    if item.get("pollenation_status") == POLLENATION_PENDING:
        item[POLLENATION_MARKER] = "1"
    if item.get("pending_events"):
        item[EVENTS_MARKER] = "1"
    return item
