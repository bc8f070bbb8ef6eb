"""One company, one history: which company a symbol meant on a date, and which symbol to ask Alpaca for. Pure logic.

Alpaca identifies an asset by its `id`, which survives a symbol change; a symbol can pass from one company
to another (META: a metaverse ETF until 2022-01-28, Facebook from 2022-06-09). Its bars endpoint maps each
requested symbol to the company holding it as of `asof` (default today) and answers that company's whole
history under the requested symbol; a symbol nobody holds any more maps to its last holder; a symbol not found
on `asof` is taken literally (https://docs.alpaca.markets/reference/stockbars, `asof`;
alpacahq/alpaca-trade-api-csharp issue 526).

The pipeline keeps, for every company, its symbol history as spans: the New York dates it traded under each
symbol. `start` None means "since before the table knew it" (the first sync, or a symbol no other company
held before); `end` None means "still". A span ends when its company is renamed or when another company takes
its symbol; a delisted company keeps its last symbol until then, as Alpaca's mapping does. Dates come from the
daily sync's observations (`observation_day`; the change happened after `seen_after`, the sync before) and
from Alpaca's `name_changes` corporate actions, whose process dates are the effective ones.

Dates are ISO strings (YYYY-MM-DD), which order as dates do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
FROM_SYNC, FROM_NAME_CHANGE, FROM_MIGRATION = "sync", "name_change", "migration"
# Extended hours end at 20:00 New York and open at 04:00: a list seen between them is the next trading day's.
DAY_TURNS_BEFORE_OPEN = timedelta(hours=4)


class UnknownSymbolOnDateError(LookupError):
    """A symbol that no company held on the date asked for (nor before it): nothing to resolve it to."""

    def __init__(self, symbol: str, day: str, holders: list[Holder]):
        known = "; ".join(h.describe() for h in holders) or "none: the assets table has never held it"
        super().__init__(f"no company held {symbol!r} on {day}; the holders the assets table knows: {known}. "
                         "Pass as_of= a date one of them held it, or read by asset id (read_asset_bars)")
        self.symbol, self.day, self.holders = symbol, day, holders


@dataclass(frozen=True)
class Span:
    """A company's time under one symbol: [start, end) in New York dates."""

    symbol: str
    start: str | None = None  # first date under the symbol; None: since before the table knew the company
    end: str | None = None  # first date no longer under it; None: still
    source: str = FROM_SYNC  # what dated it: the daily sync, a name_changes action, or the migration
    seen_after: str | None = None  # sync-dated: the observation day of the sync before, which did not show it yet

    def holds(self, day: str) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day < self.end)

    def as_item(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Span:
        fields: dict[str, Any] = {k: item.get(k) for k in ("symbol", "start", "end", "seen_after")}
        return cls(**fields, source=item.get("source", FROM_SYNC))


@dataclass(frozen=True)
class Holder:
    """One company's time under a symbol, seen from the symbol."""

    alpaca_id: str
    start: str | None
    end: str | None

    def holds(self, day: str) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day < self.end)

    def describe(self) -> str:
        return f"{self.alpaca_id} from {self.start or 'the start of its history'} until {self.end or 'now'}"

    def as_item(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Holder:
        return cls(item["alpaca_id"], item.get("start"), item.get("end"))


def spans_of(stored: Iterable[Mapping[str, Any]] | None) -> list[Span]:
    return sorted((Span.from_item(s) for s in stored or ()), key=_span_order)


def spans_item(spans: Iterable[Span]) -> list[dict[str, Any]]:
    return [s.as_item() for s in sorted(spans, key=_span_order)]


def _span_order(span: Span) -> tuple:
    return (span.start or "", span.end or "9999")


def observation_day(moment: datetime | None = None) -> str:
    """The New York trading date a list seen at `moment` belongs to: after 20:00 New York, the next one's."""
    moment = moment or datetime.now(timezone.utc)
    return (moment.astimezone(NEW_YORK) + DAY_TURNS_BEFORE_OPEN).date().isoformat()


def day_before(day: str) -> str:
    return (date.fromisoformat(day) - timedelta(days=1)).isoformat()


# --- a company's spans ---------------------------------------------------------------------------
def span_on(spans: list[Span], day: str) -> Span | None:
    return next((s for s in spans if s.holds(day)), None)


def symbol_on(spans: list[Span], day: str) -> str | None:
    span = span_on(spans, day)
    return span.symbol if span else None


def request_symbol(spans: list[Span], last_day: str) -> tuple[str, str]:
    """(symbol, asof) that makes Alpaca answer this company's bars for a window ending on `last_day`.

    The span holding `last_day`, asked as of that day; a company whose last span ended earlier (its symbol
    passed to another company) as of that span's last day; one whose history starts later as of its first day.
    """
    span = span_on(spans, last_day)
    if span is not None:
        return span.symbol, last_day
    earlier = [s for s in spans if s.end is not None and s.end <= last_day]
    if earlier:
        last = earlier[-1]
        assert last.end is not None  # `earlier` holds ended spans only
        return last.symbol, max(day_before(last.end), last.start or day_before(last.end))
    first = spans[0]
    return first.symbol, first.start or last_day


def renamed(spans: list[Span], new_symbol: str, day: str, seen_after: str | None) -> list[Span]:
    """The spans after a rename the sync saw on `day`; a rename a name_changes action already dated is kept."""
    open_span = spans[-1] if spans and spans[-1].end is None else None
    if open_span is not None and open_span.symbol == new_symbol:
        return spans  # dated by a name_changes action before the sync saw it
    kept = [s for s in spans if s is not open_span]
    start = day if open_span is None or open_span.start is None or open_span.start < day else open_span.start
    closed = [replace(open_span, end=start)] if open_span is not None else []
    return [*kept, *closed, Span(new_symbol, start, None, FROM_SYNC, seen_after)]


def released(spans: list[Span], symbol: str, day: str) -> list[Span]:
    """The spans after another company took `symbol` on `day`: an open span of it ends there."""
    return [replace(s, end=max(day, s.start or day)) if s.symbol == symbol and s.end is None else s for s in spans]


def name_changed(spans: list[Span], old: str, new: str, day: str) -> list[Span] | None:
    """The spans dated by a name_changes action (old -> new effective `day`), or None when it concerns none of them.

    A rename the sync recorded gets the action's date on both sides; one the sync has not seen yet is recorded.
    """
    for i, span in enumerate(spans):
        following = spans[i + 1] if i + 1 < len(spans) else None
        if span.symbol == old and following is not None and following.symbol == new:
            out = list(spans)
            out[i] = replace(span, end=day)
            out[i + 1] = replace(following, start=day, source=FROM_NAME_CHANGE)
            return out
        if span.symbol == old and following is None and span.end is None and (span.start is None or span.start < day):
            return [*spans[:i], replace(span, end=day), Span(new, day, None, FROM_NAME_CHANGE)]
    return None


def sync_dates_agree(span: Span, day: str) -> bool:
    """Whether a name_changes action's effective `day` is possible for a rename the sync saw: not before the trading
    day of the sync that did not show it yet (the list may change during a trading day), not after the one that did."""
    if span.source != FROM_SYNC or span.start is None:
        return True
    return (span.seen_after is None or span.seen_after <= day) and day <= span.start


# --- a symbol's holders --------------------------------------------------------------------------
def holders_by_symbol(companies: Iterable[tuple[str, list[Span]]]) -> dict[str, list[Holder]]:
    """symbol -> every company that held it, in time order."""
    found: dict[str, list[Holder]] = {}
    for alpaca_id, spans in companies:
        for span in spans:
            found.setdefault(span.symbol, []).append(Holder(alpaca_id, span.start, span.end))
    for holders in found.values():
        holders.sort(key=lambda h: (h.start or "", h.end or "9999", h.alpaca_id))
    return found


def holder_on(holders: list[Holder], day: str) -> Holder | None:
    """The company that held the symbol on `day`, else its last holder before that day (as Alpaca maps a symbol
    nobody holds any more); None when its first holder came later."""
    holding = [h for h in holders if h.holds(day)]
    if holding:
        return holding[-1]
    before = [h for h in holders if h.end is not None and h.end <= day]
    return max(before, key=lambda h: h.end or "") if before else None  # every one in `before` has an end


def resolve(symbol: str, holders: list[Holder], day: str) -> str:
    """The asset id `symbol` meant on `day`; UnknownSymbolOnDateError naming the holders when none."""
    holder = holder_on(holders, day)
    if holder is None:
        raise UnknownSymbolOnDateError(symbol, day, holders)
    return holder.alpaca_id


def current_holder(holders: list[Holder], listed: set[str]) -> Holder | None:
    """Whom `ASSET#{symbol}` shows: a listed company holding it now, else any holding it now, else its last holder."""
    holding = [h for h in holders if h.end is None]
    if holding:
        return max(holding, key=lambda h: (h.alpaca_id in listed, h.start or ""))
    return max(holders, key=lambda h: h.end or "", default=None)
