"""Recording corporate actions: fetch, file each under its company, write what changed, announce what is new.

No Dagster here (the asset in `assets.py` wires it). An action names symbols; each is resolved, as of the
action's effective date, to the company that held it then (the assets table's symbol history), and the action
is filed under that company: a split announced under a company's earlier symbol adjusts its whole history.
Writes are plain puts of items keyed by (ALPACA_ID#actions, EX_DATE#ID), so a rerun or an overlapping
backfill writes the same items again: idempotent. Events are published before their items are written; an
action whose event was refused is not written, so the next run finds it new and publishes again (consumers drop
repeated ids). Name changes also date the renames in the assets table: their process dates are the effective ones.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from signal9_pipeline.assets_sync.changes import plan_loading_whole, plan_name_changes
from signal9_pipeline.corporate_actions.actions import (
    DIVIDEND_TYPES,
    EVENT_TYPES,
    Action,
    AdjustmentError,
    duplicates,
    factors,
    fingerprint,
    from_item,
    parse_page,
    to_item,
)
from signal9_pipeline.identity import Holder, day_before, holder_on, holders_by_symbol, spans_of, sync_dates_agree
from signal9_pipeline.market_data.days import EQUITY, NEW_YORK, fetch_window, last_session, previous_session
from signal9_pipeline.market_data.pages import bar_frames
from signal9_pipeline.market_data.screening import faulty
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.resources.events import Event, EventsResource
from signal9_pipeline.tables.assets import COMPANY_DECISION_FIELDS, LISTING_FIELDS, AssetsTable
from signal9_pipeline.tables.market_data import MarketDataTable
from signal9_pipeline.timestamps import utc_stamp

DETAIL_TYPE = "corporateActionRecorded"
LOOKAHEAD = timedelta(days=45)  # payable dates seen in Alpaca's recordings trail ex-dates by 2-6 weeks
HALF_CENT = 0.005 + 1e-9  # Alpaca rounds adjusted prices to the cent: a difference up to half a cent is rounding


@dataclass
class Recorded:
    actions: list[Action] = field(default_factory=list)
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    outside: int = 0  # actions naming no company of the assets table (not stored)
    renames_dated: int = 0  # renames in the assets table that a name change dated (or recorded first)
    published: int = 0
    without_close: int = 0
    compared: int = 0
    duplicates: dict[str, str] = field(default_factory=dict)
    rename_disagreements: list[str] = field(default_factory=list)
    alpaca_disagreements: list[str] = field(default_factory=list)
    undelivered: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def record(alpaca: AlpacaResource, dynamodb: DynamoDBResource, events: EventsResource, first: date,
           last: date) -> Recorded:
    """Store the actions processed from `first` to `last + LOOKAHEAD` (New York dates) for the assets table's companies.

    Alpaca filters by process date, and a cash dividend's process date is its payable date, weeks after
    its ex-date: looking ahead records a dividend by the time its ex-date passes, and each later day's run
    sees it again until its reference close exists.
    """
    result = Recorded(actions=fetch_actions(alpaca, first, last))
    companies, holders = listed_companies(dynamodb)
    targets = {a.id: concerned(a, holders) for a in result.actions}
    result.outside = sum(not t for t in targets.values())
    priced = [a for a in result.actions if targets[a.id] and a.applies_to_prices and not a.held_back and _in_effect(a)]
    raw = session_closes(alpaca, sessions_before(priced), "raw")  # once: dividends' reference closes and the comparison
    closes = reference_closes(priced, raw)
    result.without_close = sum(a.type in DIVIDEND_TYPES and (a.symbols[0], a.ex_date) not in closes for a in priced)
    items = {a.id: [to_item(a, i, s, closes.get((s, a.ex_date)) if a.type in DIVIDEND_TYPES else None)
                    for i, s in targets[a.id]] for a in result.actions}
    store_new_and_changed(MarketDataTable(dynamodb), events, items, result)
    result.duplicates = duplicates(result.actions)
    result.rename_disagreements = rename_disagreements(result.actions, holders, companies)
    result.renames_dated = date_renames(dynamodb, result.actions)
    companies_by_session = {(s, _session_before(a)): i for a in priced for i, s in targets[a.id]}
    compare_with_alpaca(alpaca, dynamodb, priced, raw, companies_by_session, result)
    return result


def fetch_actions(alpaca: AlpacaResource, first: date, last: date) -> list[Action]:
    """Every action Alpaca processed from `first` to `last + LOOKAHEAD`, once each, in effective-date order."""
    by_id = {a.id: a for page in alpaca.iter_corporate_actions(first, last + LOOKAHEAD) for a in parse_page(page)}
    return sorted(by_id.values(), key=lambda a: (a.sort_day, a.id))


def listed_companies(dynamodb: DynamoDBResource) -> tuple[dict[str, dict], dict[str, list[Holder]]]:
    """The assets table's companies by Alpaca id, and each symbol's holders over time."""
    companies = {c["alpaca_id"]: c for c in AssetsTable(dynamodb).companies(LISTING_FIELDS)}
    return companies, holders_by_symbol((i, spans_of(c.get("symbols"))) for i, c in companies.items())


def reference_closes(priced: list[Action], raw: dict[tuple[str, date], float]) -> dict[tuple[str, date | None], float]:
    """(symbol, ex-date) -> the raw close of the session before a cash dividend's ex-date, where Alpaca had one."""
    return {(s, a.ex_date): raw[(s, _session_before(a))] for a in priced if a.type in DIVIDEND_TYPES
            for s in a.symbols if (s, _session_before(a)) in raw}


def store_new_and_changed(table: MarketDataTable, events: EventsResource, items: dict[str, list[dict]],
                          result: Recorded) -> None:
    """Announce the new actions, then write the new and changed ones' items; an action whose event was refused is
    not written, so the next run finds it new again."""
    found = table.get((i["series"], i["day"]) for its in items.values() for i in its)
    stored = {key: fingerprint(i) for key, i in found.items()}
    _stamp_recorded_at(items, found)
    writes, announce = _what_changed(result, items, stored)
    refused = {e.event_id for e in events.publish([_event(a) for a in announce])} if announce else set()
    result.undelivered = [a.id for a in announce if _event_id(a) in refused]
    result.published = len(announce) - len(result.undelivered)
    table.put([i for a in writes if a.id not in result.undelivered for i in items[a.id]])


def _stamp_recorded_at(items: dict[str, list[dict]], found: dict[tuple[str, str], dict]) -> None:
    """When the pipeline first knew each action: what `read_bars(known_at=...)` applies. An item stored before this
    was kept counts as known since always."""
    now = utc_stamp()
    for its in items.values():
        for i in its:
            earlier = found.get((i["series"], i["day"]))
            if earlier is None or "recorded_at" in earlier:
                i["recorded_at"] = earlier["recorded_at"] if earlier else now


def _what_changed(result: Recorded, items: dict[str, list[dict]],
                  stored: dict[tuple[str, str], str]) -> tuple[list[Action], list[Action]]:
    """The actions to write (new or changed) and those to announce (new, of an announced type, not held back);
    counts new, changed and unchanged on `result`."""
    writes, announce = [], []
    for action in result.actions:
        states = [stored.get((i["series"], i["day"])) for i in items[action.id]]
        if not states:
            continue
        if all(s is None for s in states):
            result.new += 1
            if action.type in EVENT_TYPES and not action.held_back:
                announce.append(action)
        elif all(s == fingerprint(i) for s, i in zip(states, items[action.id])):
            result.unchanged += 1
            continue
        else:
            result.changed += 1
        writes.append(action)
    return writes, announce


def stored_actions(alpaca_id: str, dynamodb: DynamoDBResource,
                   known_at: str | None = None) -> list[tuple[Action, float | None]]:
    """The corporate actions stored for the company (recorded by `known_at`, ISO 8601 UTC, when given), each with its
    reference close (cash dividends). An action stored before actions recorded when (`recorded_at`) counts as known."""
    return [from_item(i) for i in MarketDataTable(dynamodb).actions_of(alpaca_id)
            if known_at is None or i.get("recorded_at", "") <= known_at]


def concerned(action: Action, holders: dict[str, list[Holder]]) -> list[tuple[str, str]]:
    """(asset id, symbol) of each company the action concerns: each symbol it names, as of its effective date.

    A name change concerns the company that held its old symbol the day before (filed under the new symbol).
    """
    day = action.effective_day or datetime.now(NEW_YORK).date().isoformat()
    if action.rename is not None:
        old, new = action.rename
        holder = holder_on(holders.get(old, []), day_before(day))
        return [(holder.alpaca_id, new)] if holder else []
    found: dict[str, str] = {}
    for symbol in action.symbols:
        holder = holder_on(holders.get(symbol, []), day)
        if holder is not None:
            found.setdefault(holder.alpaca_id, symbol)
    return sorted(found.items())


def date_renames(dynamodb: DynamoDBResource, actions: list[Action]) -> int:
    """Give the assets table's renames the effective dates of Alpaca's name changes; how many were dated."""
    renames = [(*a.rename, a.effective_day) for a in actions
               if a.rename is not None and a.effective_day and not a.held_back]
    if not renames:
        return 0
    table, now = AssetsTable(dynamodb), utc_stamp()
    views = table.view_sources()
    plan = plan_loading_whole(lambda companies: plan_name_changes(renames, companies, views, now),
                              table.companies(COMPANY_DECISION_FIELDS), table.get_companies)
    table.write(plan.companies, plan.views)
    return sum(c.kind == "rename_dated" for c in plan.changes)


def _in_effect(action: Action) -> bool:
    return action.ex_date is not None and previous_session(action.ex_date) <= last_session()


def sessions_before(actions: list[Action]) -> dict[date, set[str]]:
    """The session before each action's ex-date -> the symbols whose close that session is wanted."""
    wanted: dict[date, set[str]] = collections.defaultdict(set)
    for action in actions:
        wanted[_session_before(action)].update(action.symbols)
    return wanted


def _session_before(action: Action) -> date:
    """The session before a priced action's ex-date (one without an ex-date is held back, never priced)."""
    assert action.ex_date is not None
    return previous_session(action.ex_date)


def session_closes(alpaca: AlpacaResource, wanted: dict[date, set[str]],
                   adjustment: str) -> dict[tuple[str, date], float]:
    """(symbol, session) -> its consolidated (SIP) daily close: one multi-symbol request per distinct session, the
    symbols meant as of that session (a company renamed since is still found under the symbol it traded as)."""
    closes = {}
    for session, symbols in sorted(wanted.items()):
        start, end = fetch_window(session, session, crypto=False)
        for page in bar_frames(alpaca, sorted(symbols), "1Day", start, end, asset_class=EQUITY, adjustment=adjustment,
                               feed="sip", asof=session.isoformat()):
            # a malformed bar: no close to compare
            page = page.loc[~faulty(page) & np.isfinite(page["close"].to_numpy())]
            for symbol, close in zip(page["symbol"], page["close"]):
                closes[(symbol, session)] = float(close)
    return closes


def compare_with_alpaca(alpaca: AlpacaResource, dynamodb: DynamoDBResource, actions: list[Action],
                        raw: dict[tuple[str, date], float], companies: dict[tuple[str, date], str],
                        result: Recorded) -> None:
    """Alpaca's `adjustment=all` daily close on the session before each action, against raw x our factor.

    Alpaca's adjusted bars are not the truth (its cash-dividend factors have been reported to differ
    from the standard method, and `all` includes spin-offs, which are not applied here): a difference
    of more than half a cent is reported on the check, never copied.
    """
    if not actions:
        return
    theirs = session_closes(alpaca, sessions_before(actions), "all")
    today = datetime.now(NEW_YORK).date()
    for (symbol, session), close in sorted(raw.items()):
        if (symbol, session) not in theirs or (symbol, session) not in companies:
            continue
        try:
            factor = factors(np.array([session], dtype="datetime64[D]"),
                             stored_actions(companies[(symbol, session)], dynamodb), "all", today=today).price[0]
        except AdjustmentError as exc:
            result.warnings.append(f"{symbol} {session}: not compared with Alpaca's adjusted close: {exc}")
            continue
        result.compared += 1
        ours = close * factor
        if abs(ours - theirs[(symbol, session)]) > HALF_CENT:
            result.alpaca_disagreements.append(
                f"{symbol} {session}: Alpaca's all-adjusted close {theirs[(symbol, session)]:.4f}, ours {ours:.4f} "
                f"(raw {close:.4f} x {factor:.6f})")


def rename_disagreements(actions: list[Action], holders: dict[str, list[Holder]],
                         companies: dict[str, dict]) -> list[str]:
    """Name changes the assets table contradicts: their new symbol recorded as another company's listing, or a rename
    the daily sync saw on dates that cannot hold the action's effective date (named both)."""
    found = []
    for action in actions:
        if action.rename is None or not action.effective_day:
            continue
        (old, new), day = action.rename, action.effective_day
        before = holder_on(holders.get(old, []), day_before(day))
        after = [h for h in holders.get(new, []) if h.holds(day)]
        what = f"name change {old} -> {new} effective {day} (id {action.id})"
        if before is not None and after and after[-1].alpaca_id != before.alpaca_id:
            found.append(f"{what}: the asset sync recorded {new} as another company ({after[-1].alpaca_id}, from "
                         f"{after[-1].start or 'its first sync'}), not as a rename of {before.alpaca_id}")
            continue
        spans = spans_of(companies.get(before.alpaca_id, {}).get("symbols")) if before else []
        seen = next((b for a, b in zip(spans, spans[1:]) if a.symbol == old and b.symbol == new), None)
        if seen is not None and not sync_dates_agree(seen, day):
            found.append(f"{what}: the asset sync saw the rename between the syncs of "
                         f"{seen.seen_after or 'its first day'} (not yet) and {seen.start} (renamed), "
                         f"which cannot hold {day}")
    return found


def _event_id(action: Action) -> str:
    return f"{DETAIL_TYPE}-{action.id}"


def _event(action: Action) -> Event:
    detail: dict[str, Any] = {"actionId": action.id, "type": action.type, "symbols": list(action.symbols),
              "exDate": action.ex_date.isoformat() if action.ex_date else None,
              "processDate": action.process_date.isoformat() if action.process_date else None}
    if action.ratio is not None:
        detail["ratio"] = action.ratio
    if action.type == "name_change":
        detail.update(oldSymbol=action.fields.get("old_symbol"), newSymbol=action.fields.get("new_symbol"))
    return Event(DETAIL_TYPE, detail, _event_id(action))
