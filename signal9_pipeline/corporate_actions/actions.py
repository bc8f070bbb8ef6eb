"""Corporate actions: Alpaca's answers parsed and validated, and the price factors that adjust raw bars on read.

Plain logic, no Dagster and no alpaca-py. Raw bars are stored once; adjusted
prices are computed when read, from the actions stored at that moment, so a
split recorded after the bars changes adjusted reads at once and raw stays raw.

The method is the standard one (CRSP's and most data vendors'):
- a split with ratio r = new_rate / old_rate (a 4-for-1 split has r = 4, a 1-for-10 reverse split r = 0.1)
  divides every price of each bar traded before its ex-date by r and multiplies its volume by r;
  a stock dividend of rate q (new shares per share) is a split with r = 1 + q;
- a cash dividend D multiplies every price before its ex-date by 1 - D / C, where C is the raw
  consolidated close of the last session before the ex-date;
- factors of several actions multiply; trade counts never change.
An action that cannot be applied (a zero, negative or non-finite ratio, an impossible date) is
held back with its reason; an adjusted read across it is refused, never silently wrong.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from signal9_pipeline.tables.market_data import actions_series

# Alpaca's groups in `corporate_actions` (alpaca-py `CorporateActionsSet`;
# docs.alpaca.markets/reference/corporateactions-1).
KNOWN_GROUPS = ("forward_splits", "reverse_splits", "unit_splits", "stock_dividends", "cash_dividends", "spin_offs",
                "cash_mergers", "stock_mergers", "stock_and_cash_mergers", "redemptions", "name_changes",
                "worthless_removals", "rights_distributions")
SPLIT_TYPES = ("forward_split", "reverse_split", "stock_dividend")
DIVIDEND_TYPES = ("cash_dividend",)
EVENT_TYPES = ("forward_split", "reverse_split", "name_change")  # downstream caches invalidate on these
ADJUSTMENTS = {"raw": (), "split": SPLIT_TYPES, "dividend": DIVIDEND_TYPES, "all": SPLIT_TYPES + DIVIDEND_TYPES}
EARLIEST, LATEST = date(1900, 1, 1), date(2100, 12, 31)
_NAMESPACE = uuid.UUID("6f1d3c8e-2b4a-4f5e-9c1d-5a8b7e6f4d21")


class CorporateActionsResponseError(ValueError):
    """A /v1/corporate-actions page that is not Alpaca's shape; the message names what is wrong."""


class AdjustmentError(ValueError):
    """An adjusted read that would be wrong: it crosses a held-back action or lacks a dividend's reference close."""


@dataclass(frozen=True)
class Action:
    """One corporate action as Alpaca sent it, with what the read path needs and why it may be held back."""

    id: str
    type: str  # Alpaca's group name in the singular: forward_split, cash_dividend, ... (unknown ones kept as sent)
    fields: dict[str, Any]  # the object exactly as received
    symbols: tuple[str, ...]  # every symbol it names (symbol, old_symbol, new_symbol, source_symbol, ...)
    ex_date: date | None  # first session that trades adjusted (ex_date, else effective_date)
    process_date: date | None
    ratio: float | None = None  # splits and stock dividends
    cash: float | None = None  # cash dividends, per share
    problems: tuple[tuple[str, str], ...] = ()  # (what: "ratio" | "date" | "symbol" | "stored", why)
    known: bool = True

    @property
    def held_back(self) -> str | None:
        return "; ".join(why for _, why in self.problems) or None

    @property
    def applies_to_prices(self) -> bool:
        return self.type in SPLIT_TYPES + DIVIDEND_TYPES

    @property
    def effective_day(self) -> str | None:
        """The New York date it takes effect: its ex-date, else its process date (a name change's effective date)."""
        day = self.ex_date or self.process_date
        return day.isoformat() if day else None

    @property
    def rename(self) -> tuple[str, str] | None:
        """(old symbol, new symbol) of a name change."""
        old, new = self.fields.get("old_symbol"), self.fields.get("new_symbol")
        if self.type != "name_change" or not isinstance(old, str) or not isinstance(new, str) or not old or not new:
            return None
        return old.strip(), new.strip()

    @property
    def sort_day(self) -> str:
        """The item's sort key date: its ex-date, else its process date, else 0000-00-00 (an undated, held-back one)."""
        day = self.ex_date or self.process_date
        return day.isoformat() if day else "0000-00-00"

    def content_key(self) -> tuple:
        """Two ids with this key are one event sent twice."""
        return self.type, self.ex_date, self.ratio, self.cash, tuple(sorted(self.symbols))

    def describe(self) -> str:
        what = f"{self.type} of {'/'.join(self.symbols) or '?'}"
        if self.ratio is not None:
            what += f" ratio {self.ratio:g}"
        if self.cash is not None:
            what += f" cash {self.cash:g}"
        return f"{what} ex {self.ex_date or '?'} (id {self.id})"


def parse_page(page: Any) -> list[Action]:
    """Every action of one /v1/corporate-actions page, each validated (held back with a reason, never dropped)."""
    if not isinstance(page, dict) or not isinstance(page.get("corporate_actions", {}), dict):
        raise CorporateActionsResponseError(
            f"a corporate-actions page must be an object with a corporate_actions object, got {type(page).__name__}")
    actions = []
    for group, entries in (page.get("corporate_actions") or {}).items():
        if not isinstance(entries, list):
            raise CorporateActionsResponseError(f"corporate_actions.{group} must be an array, "
                                                f"got {type(entries).__name__}")
        for entry in entries:
            if not isinstance(entry, dict):
                raise CorporateActionsResponseError(f"an entry of corporate_actions.{group} is {type(entry).__name__}, "
                                                    "expected an object")
            actions.append(parse_action(group, entry))
    return actions


def parse_action(group: str, fields: dict[str, Any]) -> Action:
    kind = group[:-1] if group.endswith("s") else group
    known = group in KNOWN_GROUPS
    symbols = tuple(dict.fromkeys(v.strip() for k, v in sorted(fields.items())
                                  if k.endswith("symbol") and isinstance(v, str) and v.strip()))
    given_id = fields.get("id")
    action_id = given_id if isinstance(given_id, str) and given_id else _content_id(group, fields)
    problems: list[tuple[str, str]] = []
    dates = {name: _date(fields, name, problems) for name in sorted(fields) if name.endswith("_date")}
    ex_date = dates.get("ex_date") or dates.get("effective_date")
    ratio = cash = None
    if kind in ("forward_split", "reverse_split"):
        new, old = _number(fields, "new_rate", problems), _number(fields, "old_rate", problems)
        if new is not None and old is not None:
            ratio = new / old
    elif kind == "stock_dividend":
        rate = _number(fields, "rate", problems)
        ratio = None if rate is None else 1 + rate
    elif kind == "cash_dividend":
        cash = _number(fields, "rate", problems)
    if known and kind in SPLIT_TYPES + DIVIDEND_TYPES:
        if ex_date is None and "ex_date" not in dates:
            problems.append(("date", "ex_date is missing"))
        if not symbols:
            problems.append(("symbol", "names no symbol"))
        _dates_ordered(kind, dates, problems)
    return Action(id=action_id, type=kind, fields=fields, symbols=symbols, ex_date=ex_date,
                  process_date=dates.get("process_date"), ratio=ratio, cash=cash,
                  problems=tuple(problems), known=known)


def _content_id(group: str, fields: dict) -> str:
    return str(uuid.uuid5(_NAMESPACE, group + json.dumps(fields, sort_keys=True, default=str)))


def _date(fields: dict, name: str, problems: list[tuple[str, str]]) -> date | None:
    value = fields.get(name)
    if value is None:
        return None
    try:
        day = date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
    except ValueError:
        day = None
    if day is None or not EARLIEST <= day <= LATEST:
        problems.append(("date", f"impossible date {name}={value!r:.32}"))
        return None
    return day


def _number(fields: dict, name: str, problems: list[tuple[str, str]]) -> float | None:
    value = fields.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        problems.append(("ratio", f"{name}={value!r:.32} must be a positive finite number"))
        return None
    return float(value)


def _dates_ordered(kind: str, dates: dict[str, date | None], problems: list[tuple[str, str]]) -> None:
    # Splits may be payable a session before their ex-date; a dividend is paid on or after its ex- and record dates.
    ex, record, payable = dates.get("ex_date"), dates.get("record_date"), dates.get("payable_date")
    if kind in DIVIDEND_TYPES and payable:
        for name, day in (("ex_date", ex), ("record_date", record)):
            if day and day > payable:
                problems.append(("date", f"{name} {day} is after payable_date {payable}"))


def duplicates(actions: Iterable[Action]) -> dict[str, str]:
    """id -> the id it repeats, for actions that are one event sent under several ids (the first id is kept)."""
    first: dict[tuple, str] = {}
    repeats = {}
    for action in sorted(actions, key=lambda a: a.id):
        if not action.applies_to_prices or action.held_back:
            continue
        kept = first.setdefault(action.content_key(), action.id)
        if kept != action.id:
            repeats[action.id] = kept
    return repeats


# --- storage: one item per (company, action) in the market-data table --------------------------
def to_item(action: Action, alpaca_id: str, symbol: str, reference_close: float | None = None) -> dict[str, Any]:
    """The action filed under the company it concerns (`symbol` is the one it was announced under)."""
    item = {"series": actions_series(alpaca_id), "day": f"{action.sort_day}#{action.id}", "symbol": symbol,
            "alpaca_id": alpaca_id, "action_id": action.id, "type": action.type,
            "fields": json.dumps(action.fields, sort_keys=True), "known": action.known}
    if action.held_back:
        item["held_back"] = action.held_back
    if reference_close is not None:
        item["reference_close"] = repr(float(reference_close))  # text: exact round trip, no Decimal
    return item


def from_item(item: dict[str, Any]) -> tuple[Action, float | None]:
    action = parse_action(item["type"] + "s" if item.get("known", True) else item["type"], json.loads(item["fields"]))
    if item.get("held_back") and not action.held_back:  # held back by a rule of its time: stays held back
        action = Action(**{**action.__dict__, "problems": (("stored", item["held_back"]),)})
    close = item.get("reference_close")
    return action, (float(close) if close is not None else None)


def fingerprint(item: dict[str, Any]) -> str:
    """What makes a stored item differ from a new one (an unchanged action is not written again)."""
    keep = {k: item.get(k) for k in ("fields", "held_back", "reference_close", "type", "known")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()


# --- adjusting ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Factors:
    price: np.ndarray  # multiply open, high, low, close, vwap
    volume: np.ndarray  # multiply volume


def factors(days: np.ndarray, actions: list[tuple[Action, float | None]], adjustment: str, *,
            today: date) -> Factors:
    """Per-bar factors for bars traded on `days` (datetime64[D]) under `adjustment`
    ("raw" | "split" | "dividend" | "all").

    Actions whose ex-date is after `today` are not yet in effect. Raises AdjustmentError for a read
    that a held-back action (or a dividend without its reference close) would make wrong.
    """
    if adjustment not in ADJUSTMENTS:
        raise ValueError(f"adjustment {adjustment!r} is not one of {', '.join(ADJUSTMENTS)}")
    wanted = ADJUSTMENTS[adjustment]
    ones = np.ones(len(days), dtype="float64")
    if not wanted or not len(days):
        return Factors(ones, ones.copy())
    first_day = days.min()
    relevant = [(a, c) for a, c in actions if a.type in wanted and (a.ex_date is None or a.ex_date <= today)]
    for action, _ in relevant:
        if action.held_back and (action.ex_date is None or np.datetime64(action.ex_date) > first_day):
            raise AdjustmentError(f"{action.describe()} is held back ({action.held_back}): {adjustment}-adjusted "
                                  "prices across it would be wrong; read adjustment='raw', or have the action "
                                  "corrected and re-materialize corporate_actions for its process date")
    events = _factor_events(relevant)
    if not events:
        return Factors(ones, ones.copy())
    events.sort(key=lambda e: e[0])
    ex = np.array([e[0] for e in events], dtype="datetime64[D]")
    # suffix[i] = product of the factors of events i.. (those with ex-date after a bar's day); suffix[n] = 1
    price = np.append(np.cumprod(np.array([e[1] for e in events])[::-1])[::-1], 1.0)
    volume = np.append(np.cumprod(np.array([e[2] for e in events])[::-1])[::-1], 1.0)
    later = np.searchsorted(ex, days.astype("datetime64[D]"), side="right")  # first event with ex-date > day
    return Factors(price[later], volume[later])


def _factor_events(relevant: list[tuple[Action, float | None]]) -> list[tuple[np.datetime64, float, float]]:
    """(ex-date, price factor, volume factor) of each action in effect and not held back, a repeat of one event
    under another id once. Raises AdjustmentError for a dividend whose price factor cannot be computed."""
    seen, events = set(), []
    for action, close in sorted(relevant, key=lambda ac: ac[0].id):
        if action.held_back or action.content_key() in seen:
            continue  # a repeat of one event under another id is applied once
        seen.add(action.content_key())
        if action.type in DIVIDEND_TYPES:
            assert action.cash is not None  # a dividend without its cash amount is held back
            if close is None or close <= 0:
                raise AdjustmentError(f"{action.describe()} has no reference close (the close of the session before "
                                      "its ex-date); re-materialize corporate_actions for its process date")
            if action.cash >= close:
                raise AdjustmentError(f"{action.describe()} pays {action.cash:g}, not less than the close {close:g} "
                                      "before it: no price factor exists; read adjustment='raw'")
            events.append((np.datetime64(action.ex_date), 1.0 - action.cash / close, 1.0))
        else:
            assert action.ratio is not None  # a split without its ratio is held back
            events.append((np.datetime64(action.ex_date), 1.0 / action.ratio, action.ratio))
    return events
