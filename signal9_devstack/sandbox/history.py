"""Which company each symbol meant on each date, as Alpaca's bars endpoint resolves it (`asof`).

What is Alpaca's, with sources:
- An asset's `id` survives a symbol change (the id fc6a5dcd-4a70-4b8d-b64f-d83a6dae9ba4 is "FB" in 2021 asset
  responses and "META" in 2025 order and position responses, public recordings); a ticker can pass to another
  company, which has its own id (META: Roundhill's metaverse ETF until 2022-01-28, then METV; Facebook from
  2022-06-09; alpacahq/alpaca-trade-api-csharp issue 526).
- The bars endpoint's `asof` (https://docs.alpaca.markets/reference/stockbars): "The as-of date of the queried
  stock symbol(s). Format: YYYY-MM-DD. Default: current day. This date is used to identify the underlying
  entity of the provided symbol(s) ... Data for past symbol(s) is returned if the query date range spans the
  name change. The special value of "-" means symbol mapping is skipped. Data is returned based on the symbol
  alone without looking up previous names. The same happens if the queried symbol is not found on the given
  asof date." Issue 526: querying FB (held by nobody since) returns Facebook "up until the last trade prior to
  their symbol change"; META with asof 2022-01-01 returns the ETF. The recorded META pages of
  alpaca-trade-api-go (contract corpus) return a pre-rename bar under META.
- A company trades only while listed: no bars before its listing or after its delisting.

The sandbox's own choices: the starting universe has no recorded past (every company has always held its
symbol and always traded); a change replaces the universe at a New York date (`PUT /_sandbox/universe?effective=`,
by default the trading day a list published now is for: today's New York date, the next one's after the extended
hours end at 20:00, `listing_day`), so a rename splits the company's symbol history there and a delisting stops
its trading. A company listed under a symbol no other company held has a trading history before its listing (a
company newly tradable on Alpaca); one listed under a symbol another company held before is a new company that
starts trading that day. Its generated bars derive from its own key (its first symbol, or symbol|id for a reused
ticker), so two companies never share bars. Of several companies the starting universe lists under one symbol
(Alpaca keeps a delisted twin), the listed one holds it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

ASSET_CLASSES = ("us_equity", "crypto")


def listing_day(now: datetime | None = None) -> date:
    """The trading day a list published at `now` is for: New York's date, the next one's after 20:00 New York."""
    return ((now or datetime.now(timezone.utc)).astimezone(ZoneInfo("America/New_York")) + timedelta(hours=4)).date()


class HistoryError(ValueError):
    """A universe change the sandbox cannot date: effective before the last change."""


@dataclass
class Entity:
    """One company (or crypto pair) across time, by its Alpaca id."""

    alpaca_id: str
    asset_class: str
    key: str  # what its generated bars and corporate actions derive from
    spans: list[list] = field(default_factory=list)  # [symbol, start, end]: New York dates, None unbounded
    trading: list[list] = field(default_factory=list)  # [start, end] periods it trades in, None unbounded

    def symbol_on(self, day: date) -> str | None:
        return next((s for s, start, end in self.spans if _holds(start, end, day)), None)

    def last_symbol(self) -> str:
        return self.spans[-1][0]


def _holds(start: date | None, end: date | None, day: date) -> bool:
    return (start is None or start <= day) and (end is None or day < end)


def _listed(asset: dict) -> bool:
    return asset.get("status") == "active" and asset.get("tradable") is True


def _usable(asset: object) -> bool:
    """An asset of a class with bars, whose id and symbol are strings (a hostile universe holds anything)."""
    return (isinstance(asset, dict) and asset.get("class") in ASSET_CLASSES and isinstance(asset.get("id"), str)
            and isinstance(asset.get("symbol"), str))


class History:
    """Every company the sandbox has served, with its symbols and trading periods over time."""

    def __init__(self, universe: list[dict]):
        self.entities: dict[str, Entity] = {}
        self.last_change: date | None = None
        holders: dict[str, Entity] = {}
        for asset in sorted((a for a in universe if _usable(a)), key=lambda a: not _listed(a)):
            entity = Entity(asset["id"], asset["class"], asset["symbol"], [], [[None, None]])
            if asset["symbol"] in holders or asset["id"] in self.entities:
                entity.key = f"{asset['symbol']}|{asset['id']}"  # a delisted twin: not reachable by its symbol
            else:
                entity.spans.append([asset["symbol"], None, None])
                holders[asset["symbol"]] = entity
            self.entities.setdefault(asset["id"], entity)
        self.listed = {a["id"] for a in universe if _usable(a) and _listed(a)}
        self.symbols = {a["id"]: a["symbol"] for a in universe if _usable(a)}
        self._index()

    def _index(self) -> None:
        """Lookups by symbol and by key, rebuilt after every change (a request asks for up to thousands of symbols)."""
        self._copied: set[str] = set()
        self.spans_by_symbol: dict[str, list[tuple[Entity, date | None, date | None]]] = {}
        for entity in self.entities.values():
            for symbol, start, end in entity.spans:
                self.spans_by_symbol.setdefault(symbol, []).append((entity, start, end))
        self.keys = {e.key: e for e in self.entities.values()}
        self.known = {c: {s for s, spans in self.spans_by_symbol.items()
                          if any(e.asset_class == c for e, _, _ in spans)}
                      for c in ASSET_CLASSES}

    def changed(self, universe: list[dict], day: date) -> tuple[History, list[tuple[str, str]]]:
        """A new history with `universe` in effect from `day` (this one is left as it is, for requests being served);
        the (old, new) symbols of every rename. Companies that did not change are shared, not copied."""
        if self.last_change is not None and day < self.last_change:
            raise HistoryError(f"effective {day} is before the last change ({self.last_change}); "
                               "changes are dated in order")
        new = copy.copy(self)
        new.entities, new.last_change, new._copied = dict(self.entities), day, set()
        used = set(self.spans_by_symbol)
        now = {a["id"]: a for a in universe if _usable(a)}
        renames = []
        for alpaca_id, asset in now.items():
            symbol = asset["symbol"]
            if alpaca_id not in new.entities:
                new._list_new(asset, day, reused=symbol in used)
            elif symbol != self.symbols.get(alpaca_id):
                renames.append((self.symbols[alpaca_id], symbol))
                new._take(new._own(alpaca_id), symbol, day)
        for alpaca_id in list(new.entities):
            was, will = alpaca_id in self.listed, alpaca_id in now and _listed(now[alpaca_id])
            trading = new.entities[alpaca_id].trading
            if was and not will and trading and trading[-1][1] is None:
                new._own(alpaca_id).trading[-1][1] = day
            elif will and not was and trading and trading[-1][1] is not None:
                new._own(alpaca_id).trading.append([day, None])
        new.listed = {i for i, a in now.items() if _listed(a)}
        new.symbols = {**self.symbols, **{i: a["symbol"] for i, a in now.items()}}
        new._index()
        return new, renames

    def _own(self, alpaca_id: str) -> Entity:
        """The company, copied on its first change in this history (the one it came from shares it until then)."""
        entity = self.entities[alpaca_id]
        if alpaca_id not in self._copied:
            entity = Entity(entity.alpaca_id, entity.asset_class, entity.key, [list(s) for s in entity.spans],
                            [list(t) for t in entity.trading])
            self.entities[alpaca_id] = entity
            self._copied.add(alpaca_id)
        return entity

    def _list_new(self, asset: dict, day: date, *, reused: bool) -> None:
        symbol = asset["symbol"]
        entity = Entity(asset["id"], asset["class"], f"{symbol}|{asset['id']}" if reused else symbol, [],
                        [[day if reused else None, None]])
        self.entities[asset["id"]] = entity
        self._copied.add(asset["id"])
        self._take(entity, symbol, day if reused else None)

    def _take(self, entity: Entity, symbol: str, day: date | None) -> None:
        """`entity` holds `symbol` from `day`: its own open span and any other holder's of that symbol end there."""
        if day is not None:
            holders = {e.alpaca_id for e, _, end in self.spans_by_symbol.get(symbol, []) if end is None}
            for alpaca_id in holders - {entity.alpaca_id}:
                for span in self._own(alpaca_id).spans:
                    if span[0] == symbol and span[2] is None:
                        span[2] = day
            for span in entity.spans:
                if span[2] is None:
                    span[2] = day
        entity.spans.append([symbol, day, None])

    # --- what the bars endpoint asks -----------------------------------------------------------
    def holder(self, symbol: str, day: date) -> Entity | None:
        """The company that held `symbol` on `day`; None when nobody did (Alpaca then takes the symbol literally)."""
        holding = [e for e, start, end in self.spans_by_symbol.get(symbol, []) if _holds(start, end, day)]
        return holding[-1] if holding else None

    def literal(self, symbol: str) -> list[tuple[Entity, date | None, date | None]]:
        """Every (company, start, end) that traded under the string `symbol`: what "-" (no mapping) answers."""
        return list(self.spans_by_symbol.get(symbol, []))

    def known_symbols(self, asset_class: str) -> set[str]:
        return self.known.get(asset_class, set())

    def label(self, key: str, day: date) -> str:
        """The symbol the company with this key traded under on `day` (its first one before its history starts)."""
        entity = self.keys.get(key)
        if entity is None or not entity.spans:
            return key
        first = entity.spans[0]
        return entity.symbol_on(day) or (first[0] if first[1] is not None and day < first[1] else entity.last_symbol())

    def relabelled_keys(self) -> set[str]:
        """Keys of companies whose symbol was ever other than their key (their actions need labels by date)."""
        return {e.key for e in self.entities.values() if any(s != e.key for s, _, _ in e.spans)}

    def as_json(self) -> list[dict]:
        """Every company: id, class, the key its bars derive from, its symbol spans and trading periods (dates or
        null)."""
        text = lambda d: d.isoformat() if d else None  # noqa: E731
        return [{"id": e.alpaca_id, "class": e.asset_class, "key": e.key,
                 "spans": [[s, text(start), text(end)] for s, start, end in e.spans],
                 "trading": [[text(start), text(end)] for start, end in e.trading]} for e in self.entities.values()]

