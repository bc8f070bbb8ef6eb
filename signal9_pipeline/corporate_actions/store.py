"""Recording corporate actions: fetch, keep the assets table's symbols, write what changed, announce what is new.

No Dagster here (the asset in `assets.py` wires it). Writes are plain puts of
items keyed by (SYMBOL#actions, EX_DATE#ID), so a rerun or an overlapping
backfill writes the same items again: idempotent. Events are published before
their items are written; an action whose event was refused is not written, so
the next run finds it new and publishes again (consumers drop repeated ids).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np

from signal9_pipeline.corporate_actions.actions import (
    DIVIDEND_TYPES,
    EVENT_TYPES,
    Action,
    AdjustmentError,
    duplicates,
    factors,
    fingerprint,
    parse_page,
    to_item,
)
from signal9_pipeline.market_data.days import EQUITY, NEW_YORK, faulty, fetch_window, last_session, previous_session
from signal9_pipeline.market_data.read import stored_actions
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.resources.events import Event, EventsResource

DETAIL_TYPE = "corporateActionRecorded"
LOOKAHEAD = timedelta(days=45)  # payable dates seen in Alpaca's recordings trail ex-dates by 2-6 weeks
HALF_CENT = 0.005 + 1e-9  # Alpaca rounds adjusted prices to the cent: a difference up to half a cent is rounding


@dataclass
class Recorded:
    actions: list[Action] = field(default_factory=list)
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    outside: int = 0  # actions naming no symbol of the assets table (not stored)
    published: int = 0
    without_close: int = 0
    compared: int = 0
    duplicates: dict[str, str] = field(default_factory=dict)
    rename_disagreements: list[str] = field(default_factory=list)
    alpaca_disagreements: list[str] = field(default_factory=list)
    undelivered: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def record(alpaca: AlpacaResource, dynamodb: DynamoDBResource, events: EventsResource, first: date, last: date) -> Recorded:
    """Store the actions processed from `first` to `last + LOOKAHEAD` (New York dates) for the assets table's symbols.

    Alpaca filters by process date, and a cash dividend's process date is its payable date, weeks after
    its ex-date: looking ahead records a dividend by the time its ex-date passes, and each later day's run
    sees it again until its reference close exists.
    """
    by_id = {a.id: a for page in alpaca.iter_corporate_actions(first, last + LOOKAHEAD) for a in parse_page(page)}
    result = Recorded(actions=sorted(by_id.values(), key=lambda a: (a.sort_day, a.id)))
    assets = {i["symbol"]: i for i in dynamodb.scan(dynamodb.assets_table_name(),
                                                    projection=["symbol", "alpaca_id", "asset_class", "renamed_from", "renamed_to"])}
    targets = {a.id: [s for s in a.symbols if s in assets] for a in result.actions}
    result.outside = sum(not t for t in targets.values())
    priced = [a for a in result.actions if targets[a.id] and a.applies_to_prices and not a.held_back and _in_effect(a)]
    raw = session_closes(alpaca, sessions_before(priced), "raw")  # once: dividends' reference closes and the comparison
    closes = {(s, a.ex_date): raw[(s, previous_session(a.ex_date))] for a in priced if a.type in DIVIDEND_TYPES
              for s in a.symbols if (s, previous_session(a.ex_date)) in raw}
    table = dynamodb.market_data_table_name()
    items = {a.id: [to_item(a, s, closes.get((s, a.ex_date)) if a.type in DIVIDEND_TYPES else None)
                    for s in targets[a.id]] for a in result.actions}
    keys = [{"series": i["series"], "day": i["day"]} for its in items.values() for i in its]
    stored = {(i["series"], i["day"]): fingerprint(i) for i in dynamodb.get_items(table, keys)}
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
    refused = {e.event_id for e in events.publish([_event(a) for a in announce])} if announce else set()
    result.undelivered = [a.id for a in announce if _event_id(a) in refused]
    result.published = len(announce) - len(result.undelivered)
    dynamodb.put_items(table, [i for a in writes if a.id not in result.undelivered for i in items[a.id]])
    result.without_close = sum(a.type in DIVIDEND_TYPES and (targets[a.id][0], a.ex_date) not in closes for a in priced)
    result.duplicates = duplicates(result.actions)
    result.rename_disagreements = rename_disagreements(result.actions, assets)
    compare_with_alpaca(alpaca, dynamodb, priced, raw, result)
    _warn(result)
    return result


def _in_effect(action: Action) -> bool:
    return action.ex_date is not None and previous_session(action.ex_date) <= last_session()


def sessions_before(actions: list[Action]) -> dict[date, set[str]]:
    """The session before each action's ex-date -> the symbols whose close that session is wanted."""
    wanted: dict[date, set[str]] = collections.defaultdict(set)
    for action in actions:
        wanted[previous_session(action.ex_date)].update(action.symbols)
    return wanted


def session_closes(alpaca: AlpacaResource, wanted: dict[date, set[str]], adjustment: str) -> dict[tuple[str, date], float]:
    """(symbol, session) -> its consolidated (SIP) daily close: one multi-symbol request per distinct session."""
    closes = {}
    for session, symbols in sorted(wanted.items()):
        start, end = fetch_window(session, session, crypto=False)
        for page in alpaca.iter_bars(sorted(symbols), "1Day", start, end, asset_class=EQUITY, adjustment=adjustment,
                                     feed="sip"):
            page = page.loc[~faulty(page) & np.isfinite(page["close"].to_numpy())]  # a malformed bar: no close to compare
            for symbol, close in zip(page["symbol"], page["close"]):
                closes[(symbol, session)] = float(close)
    return closes


def compare_with_alpaca(alpaca: AlpacaResource, dynamodb: DynamoDBResource, actions: list[Action],
                        raw: dict[tuple[str, date], float], result: Recorded) -> None:
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
        if (symbol, session) not in theirs:
            continue
        try:
            factor = factors(np.array([session], dtype="datetime64[D]"), stored_actions(symbol, dynamodb), "all",
                             today=today).price[0]
        except AdjustmentError as exc:
            result.warnings.append(f"{symbol} {session}: not compared with Alpaca's adjusted close: {exc}")
            continue
        result.compared += 1
        ours = close * factor
        if abs(ours - theirs[(symbol, session)]) > HALF_CENT:
            result.alpaca_disagreements.append(
                f"{symbol} {session}: Alpaca's all-adjusted close {theirs[(symbol, session)]:.4f}, ours {ours:.4f} "
                f"(raw {close:.4f} x {factor:.6f})")


def rename_disagreements(actions: list[Action], assets: dict[str, dict]) -> list[str]:
    """Name changes that the assets table does not show as a rename of one alpaca_id."""
    found = []
    for action in actions:
        if action.type != "name_change":
            continue
        old, new = action.fields.get("old_symbol"), action.fields.get("new_symbol")
        before, after = assets.get(old), assets.get(new)
        if before is None and after is None:
            continue  # neither symbol is in the assets table: nothing to reconcile
        recorded = (after is not None and after.get("renamed_from") == old) or (
            before is not None and before.get("renamed_to") == new)
        same_id = before is None or after is None or before.get("alpaca_id") == after.get("alpaca_id")
        if not recorded or not same_id:
            seen = "no rename" if not recorded else f"alpaca_ids {before.get('alpaca_id')} and {after.get('alpaca_id')}"
            found.append(f"name change {old} -> {new} processed {action.process_date} (id {action.id}): "
                         f"the asset sync recorded {seen}")
    return found


def _event_id(action: Action) -> str:
    return f"{DETAIL_TYPE}-{action.id}"


def _event(action: Action) -> Event:
    detail = {"actionId": action.id, "type": action.type, "symbols": list(action.symbols),
              "exDate": action.ex_date.isoformat() if action.ex_date else None,
              "processDate": action.process_date.isoformat() if action.process_date else None}
    if action.ratio is not None:
        detail["ratio"] = action.ratio
    if action.type == "name_change":
        detail.update(oldSymbol=action.fields.get("old_symbol"), newSymbol=action.fields.get("new_symbol"))
    return Event(DETAIL_TYPE, detail, _event_id(action))


def _warn(result: Recorded) -> None:
    unknown = collections.Counter(a.type for a in result.actions if not a.known)
    if unknown:
        result.warnings.append(f"{sum(unknown.values())} action(s) of types this pipeline does not know, stored raw: "
                               + ", ".join(f"{t} ({n})" for t, n in sorted(unknown.items())))
    if result.without_close:
        result.warnings.append(f"{result.without_close} cash dividend(s) in effect without a reference close (Alpaca "
                               "had no SIP daily bar for the session before the ex-date); dividend-adjusted reads "
                               "across them are refused until it is recorded")
    held = [a for a in result.actions if a.held_back]
    if held:
        result.warnings.append(f"{len(held)} action(s) held back: " + "; ".join(f"{a.describe()}: {a.held_back}" for a in held[:20]))
    if result.outside:
        result.warnings.append(f"{result.outside} action(s) name no symbol of the assets table and were not stored")
