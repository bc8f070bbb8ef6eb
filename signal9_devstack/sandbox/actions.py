"""Corporate actions for the sandbox: Alpaca's `GET /v1/corporate-actions`, split cliffs in raw bars, adjusted bars.

Real raw prices jump at a split and drop at a dividend, and a pipeline that
stores raw bars must learn of both from the corporate-actions endpoint. The
sandbox therefore derives splits, dividends and renames from one deterministic
source and serves them three ways that agree: the actions themselves, raw bars
that show each split's cliff, and `adjustment=` bars computed from the same
actions. What is Alpaca's and what is the sandbox's own:

- Endpoint, parameters and shape are Alpaca's (https://docs.alpaca.markets/reference/corporateactions,
  alpaca-py alpaca/data/models/corporate_actions.py and requests.py, alpaca-trade-api-go
  marketdata/rest.go): `symbols`, `cusips`, `types` (singular names, e.g. `forward_split`), `start`/`end`
  (inclusive YYYY-MM-DD, "Default: current day", on `process_date`), `ids` ("mutually exclusive with all other
  filters", no more ids than `limit`), `limit` 1-1000, default 100, counted over all types together, `sort`
  asc|desc, `page_token`. The body is `{"corporate_actions": {"<type>s": [...]}, "next_page_token"}`; types
  without entries are left out (recorded second page of alpaca-py tests/data/test_corporate_actions.py,
  alpaca-trade-api-go's `omitempty` struct), keys alphabetical as in the recorded bodies. Pages hold the
  actions ordered by (process_date, CUSIP, type, ex-date) - the sandbox's order; Alpaca's recorded token,
  base64 of `CUSIP|date|id`, suggests process date and CUSIP lead - and the token names the next one.
- Fields and dates follow the recordings in signal9_pipeline_tests/contract/corpus/corporate_actions/:
  forward splits record two sessions and pay one session before the ex-date, process on it, due-bill
  redemption one session after (FBL, NVDL, SRE); reverse splits have ex = process = record = payable
  (LSB, forum.alpaca.markets/t/15095) and old/new CUSIPs; a cash dividend's process_date is its payable
  date (TPG, FCF, ZMTBY) and its record date equals the ex-date from T+1 settlement on (2024-05-28), one
  session later before it.
- The sandbox's own choices: which stocks act and how often (3% one forward split of 2:1, 3:1, 4:1 or 3:2;
  1% one reverse split of 1:5, 1:10 or 1:20; 25% pay quarterly dividends of 0.2%-1% of the price, starting
  somewhere in the first half of the bar history), CUSIPs (a valid check digit over a hash of the symbol:
  one CUSIP per symbol, a reverse split's old_cusip a retired one), payable dates 8-20 sessions after the
  record date. Only active us_equity assets act; crypto has no actions. Only actions whose ex-date is on or
  before the sandbox's "today" exist, so an adjustment never anticipates an action; a dividend's process
  (payable) date can lie a few weeks after today, as an announced but unpaid dividend does.
- Guaranteed actions, whatever the universe (>= 3 active us_equity assets): the active us_equity symbols
  sorted by blake2b(seed|symbol) give, in that order, one 4-for-1 forward split, one 1-for-10 reverse split
  and one cash dividend, each on an XNYS session 10 to 55 sessions before the last session on or before
  today (so never the first or last session of a ~90-day window), and nothing else for those three symbols.
  Tests find them with `guaranteed()` or through the endpoint (types and rates).
- Renames: when the universe is replaced and an asset keeps its `id` under a new symbol (as churn.py
  renames), a `name_changes` action is recorded with process_date = the New York day of the change.

Raw bars (`raw_bars`): before a split's ex-date prices are ratio x the generated (post-split) level and
volumes are divided by the ratio, rounded to a multiple of the old rate so that split adjustment gives
whole shares back; trade counts stay. A bar belongs to the New York trading day its timestamp falls in.

Adjusted bars (`adjusted_bars`) use the standard backward method (CRSP-style cumulative factors, the one
Yahoo and most vendors document): a split with r = new_rate / old_rate divides o, h, l, c, vw of every bar
before its ex-date by r and multiplies its volume by r; a cash dividend D multiplies those prices by
1 - D / C, C the raw SIP daily close of the last session before the ex-date; factors multiply. Alpaca does
not document its formula, and one recorded case (forum.alpaca.markets/t/18614, TPG, 2026-02) does not
reproduce it exactly, so the sandbox claims only the standard method. Precision follows the recordings:
the recorded adjusted bars (TPG above; PFE, forum.alpaca.markets/t/12998) carry prices and vwap rounded to
cents while bars on or after the ex-date keep their raw precision, so adjusted prices are rounded to cents
(to 4 decimals below $1, the sandbox's own rule) and unaffected bars are untouched. Volumes stay integers.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import functools
import hashlib
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np

from signal9_devstack.sandbox.bars import MINUTES_PER_DAY, BarGenerator, Bars, xnys_days
from signal9_devstack.sandbox.history import History

# Alpaca's type names (`types=` values) and the body's keys for them.
TYPES = {
    "reverse_split": "reverse_splits", "forward_split": "forward_splits", "unit_split": "unit_splits",
    "cash_dividend": "cash_dividends", "stock_dividend": "stock_dividends", "spin_off": "spin_offs",
    "cash_merger": "cash_mergers", "stock_merger": "stock_mergers", "stock_and_cash_merger": "stock_and_cash_mergers",
    "redemption": "redemptions", "name_change": "name_changes", "worthless_removal": "worthless_removals",
    "rights_distribution": "rights_distributions",
}
MAX_LIMIT, DEFAULT_LIMIT = 1000, 100
ADJUSTMENTS = ("split", "dividend", "spin-off")  # `all` is every one of them; `raw` none
T_PLUS_ONE_FROM = date(2024, 5, 28)
# The sandbox's own frequencies and sizes (see the module docstring).
FORWARD_SPLIT_SHARE, REVERSE_SPLIT_SHARE, DIVIDEND_PAYER_SHARE = 0.03, 0.01, 0.25
FORWARD_RATIOS = ((2, 1), (3, 1), (4, 1), (3, 2))  # (new_rate, old_rate)
REVERSE_RATIOS = ((1, 5), (1, 10), (1, 20))
DIVIDEND_YIELD_PER_QUARTER = (0.002, 0.01)
SESSIONS_PER_QUARTER = 63
GUARANTEED_SESSIONS_BACK = (10, 55)
_EPOCH = date(1970, 1, 1)
_ID_NAMESPACE = bytes.fromhex("5f6e0c2a9d3b4b8e8a51c0de5a9d0001")  # the sandbox's uuid5 namespace


class ActionsError(ValueError):
    """A corporate-actions request Alpaca would refuse; the message names the parameter and the fix."""


def day_number(d: date) -> int:
    return (d - _EPOCH).days


def day_date(n: int) -> date:
    return _EPOCH + timedelta(days=int(n))


def new_york_today() -> date:
    return datetime.now(ZoneInfo("America/New_York")).date()


@functools.lru_cache(maxsize=1)
def session_days() -> np.ndarray:
    """Every XNYS session as a day number (days since 1970-01-01), in order."""
    return xnys_days().label // MINUTES_PER_DAY


def bar_days(t: np.ndarray) -> np.ndarray:
    """The New York trading day (day number) each bar stamp (epoch minutes) belongs to: the session whose
    midnight-New-York label is the last one at or before the stamp (daily bars are stamped at it)."""
    labels = xnys_days().label
    return labels[np.maximum(np.searchsorted(labels, t, "right") - 1, 0)] // MINUTES_PER_DAY


def _uniform(key: str) -> float:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") / 2.0**64


def cusip_for(key: str) -> str:
    """A well-formed CUSIP (six-digit issuer, issue "10", check digit) derived from `key`: the sandbox's own."""
    body = f"{int(_uniform('cusip|' + key) * 1_000_000):06d}10"
    total = 0
    for i, char in enumerate(body):
        value = int(char) * (2 if i % 2 else 1)
        total += value // 10 + value % 10
    return body + str((10 - total % 10) % 10)


@functools.lru_cache(maxsize=65_536)
def _cached_cusip(key: str) -> str:
    return cusip_for(key)


def action_id(name: str) -> str:
    """uuid5 of `name` in the sandbox's namespace (what uuid.uuid5 returns, without its slow constructor)."""
    raw = bytearray(hashlib.sha1(_ID_NAMESPACE + name.encode()).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Action(NamedTuple):
    """One corporate action, compact (day numbers); `body()` is its JSON in Alpaca's shape."""

    kind: str  # Alpaca's singular type name
    symbol: str  # the symbol it is filed under (a name change: the new one)
    cusip: str
    process: int
    ex: int = -1
    record: int = -1
    payable: int = -1
    new_rate: float = 0.0  # a split's new_rate; a dividend's rate
    old_rate: float = 0.0
    old_symbol: str = ""
    old_cusip: str = ""

    @property
    def sort_key(self) -> tuple:
        return self.process, self.cusip, self.kind, self.ex, self.symbol

    @property
    def id(self) -> str:
        return action_id("|".join(map(str, self)))  # the content, so equal actions keep one id

    def body(self) -> dict:
        d = lambda n: day_date(n).isoformat()  # noqa: E731
        if self.kind == "forward_split":
            fields = {"cusip": self.cusip, "due_bill_redemption_date": d(_session_after(self.ex, 1)),
                      "ex_date": d(self.ex), "new_rate": int(self.new_rate), "old_rate": int(self.old_rate),
                      "payable_date": d(self.payable), "process_date": d(self.process), "record_date": d(self.record),
                      "symbol": self.symbol}
        elif self.kind == "reverse_split":
            fields = {"ex_date": d(self.ex), "new_cusip": self.cusip, "new_rate": int(self.new_rate),
                      "old_cusip": self.old_cusip, "old_rate": int(self.old_rate), "payable_date": d(self.payable),
                      "process_date": d(self.process), "record_date": d(self.record), "symbol": self.symbol}
        elif self.kind == "cash_dividend":
            fields = {"cusip": self.cusip, "ex_date": d(self.ex), "foreign": False, "payable_date": d(self.payable),
                      "process_date": d(self.process), "rate": self.new_rate, "record_date": d(self.record),
                      "special": False, "symbol": self.symbol}
        else:  # name_change
            fields = {"new_cusip": self.cusip, "new_symbol": self.symbol, "old_cusip": self.old_cusip,
                      "old_symbol": self.old_symbol, "process_date": d(self.process)}
        return dict(sorted({**fields, "id": self.id}.items()))

    def concerns(self, symbols: set[str]) -> bool:
        return self.symbol in symbols or self.old_symbol in symbols

    def has_cusip(self, cusips: set[str]) -> bool:
        return self.cusip in cusips or self.old_cusip in cusips


def _session_after(day: int, sessions: int) -> int:
    days = session_days()
    return int(days[np.searchsorted(days, day) + sessions])


def name_change(old_symbol: str, new_symbol: str, on: date, seed: int) -> Action:
    return Action("name_change", new_symbol, cusip_for(f"{seed}|{new_symbol}"), day_number(on),
                  old_symbol=old_symbol, old_cusip=cusip_for(f"{seed}|{old_symbol}"))


def _round_price(x: np.ndarray) -> np.ndarray:
    """Cents, or 4 decimals below $1, as the sandbox's raw prices are."""
    return np.where(x < 1, np.round(x, 4), np.round(x, 2))


class Splits(NamedTuple):
    """A symbol's splits by ex-date with, for each position i, the products over splits i.. (later ones)."""

    ex: np.ndarray
    ratio: np.ndarray  # prod of new_rate / old_rate; one more entry (1) for "no later split"
    new: np.ndarray  # prod of new_rate, integers
    old: np.ndarray  # prod of old_rate, integers

    @classmethod
    def of(cls, splits: Iterable[Action]) -> Splits:
        ordered = sorted(splits, key=lambda a: a.ex)
        later = lambda rates: np.append(np.cumprod(rates[::-1])[::-1], 1).astype(np.int64)  # noqa: E731
        new = later(np.array([int(a.new_rate) for a in ordered], dtype=np.int64))
        old = later(np.array([int(a.old_rate) for a in ordered], dtype=np.int64))
        return cls(np.array([a.ex for a in ordered], dtype=np.int64), new / old, new, old)

    def at(self, days: np.ndarray) -> np.ndarray:
        """Per day, the index into ratio/new/old of the splits whose ex-date is after it."""
        return np.searchsorted(self.ex, days, "right")


class CorporateActions:
    """The actions of one universe and seed, as of `today`; per-symbol parts computed on first use."""

    def __init__(self, keys: Iterable[str], *, seed: int, today: date, name_changes: Iterable[Action] = (),
                 history: History | None = None):
        """`keys`: the active stocks' keys (their first symbol, `history.py`), from which their actions derive; each
        action is labelled with the symbol its company traded under on its date."""
        self.seed, self.today, self.history = seed, today, history
        days = session_days()
        self.last_session = int(np.searchsorted(days, day_number(today), "right")) - 1
        self.symbols = sorted(set(keys))
        self._relabelled = history.relabelled_keys() if history is not None else set()
        ranked = sorted(self.symbols, key=lambda s: hashlib.blake2b(f"{seed}|{s}".encode(), digest_size=8).digest())
        self.guaranteed_kinds = dict(zip(ranked, ("forward_split", "reverse_split", "cash_dividend")))
        self._active = set(self.symbols)
        self.name_changes = list(name_changes)
        self._splits: dict[str, tuple[Action, ...]] = {}
        self._dividends: dict[str, tuple[Action, ...]] = {}
        self._split_factors: dict[str, Splits] = {}
        self._closes: dict[tuple[str, int], float | None] = {}
        self._everything: list[Action] | None = None
        self._by_id: dict[str, Action] | None = None

    # --- what exists -------------------------------------------------------------------------------
    def guaranteed(self) -> list[Action]:
        """The 4-for-1 split, the 1-for-10 reverse split and the cash dividend every universe has."""
        return [a for symbol, kind in self.guaranteed_kinds.items()
                for a in (*self.splits(symbol), *self.dividends(symbol)) if a.kind == kind]

    def of_symbol(self, symbol: str) -> list[Action]:
        return [*self.splits(symbol), *self.dividends(symbol), *(a for a in self.name_changes if a.concerns({symbol}))]

    def everything(self) -> list[Action]:
        """Every action, in ascending sort order; the generated ones built once, on first use (a few hundred
        thousand dividends for 12,000 stocks)."""
        if self._everything is None:
            self._everything = sorted((a for s in self.symbols for a in (*self.splits(s), *self.dividends(s))),
                                      key=Action.sort_key.fget)
            self._process_days = [a.process for a in self._everything]
        return self._everything

    def processed_between(self, first: int, last: int) -> list[Action]:
        """The actions whose process date lies in [first, last] (day numbers), in ascending sort order."""
        generated = self.everything()
        lo, hi = bisect.bisect_left(self._process_days, first), bisect.bisect_right(self._process_days, last)
        renamed = [a for a in self.name_changes if first <= a.process <= last]
        return sorted([*generated[lo:hi], *renamed], key=Action.sort_key.fget) if renamed else generated[lo:hi]

    def _draw(self, symbol: str, tag: str) -> float:
        return _uniform(f"{self.seed}|{symbol}|{tag}")

    def _cusip(self, symbol: str) -> str:
        return _cached_cusip(f"{self.seed}|{symbol}")

    def _of_active(self, store: dict[str, tuple[Action, ...]], symbol: str, generate) -> tuple[Action, ...]:
        """A symbol's actions of one family, generated on first use; inactive and unknown symbols have none."""
        cached = store.get(symbol)
        if cached is None:
            cached = store[symbol] = tuple(generate(symbol)) if symbol in self._active else ()
        return cached

    def splits(self, symbol: str) -> tuple[Action, ...]:
        return self._of_active(self._splits, symbol, self._generate_splits)

    def _generate_splits(self, symbol: str) -> Iterator[Action]:
        guaranteed = self.guaranteed_kinds.get(symbol)
        if guaranteed in ("forward_split", "reverse_split"):
            yield self._split(symbol, guaranteed, (4, 1) if guaranteed == "forward_split" else (1, 10),
                              self._guaranteed_session(symbol))
        if guaranteed:
            return
        span = self.last_session - 3
        for kind, share, ratios in (("forward_split", FORWARD_SPLIT_SHARE, FORWARD_RATIOS),
                                    ("reverse_split", REVERSE_SPLIT_SHARE, REVERSE_RATIOS)):
            if span > 0 and self._draw(symbol, kind) < share:
                ratio = ratios[int(self._draw(symbol, kind + "|ratio") * len(ratios))]
                yield self._split(symbol, kind, ratio, 3 + int(self._draw(symbol, kind + "|day") * span))

    def _guaranteed_session(self, symbol: str) -> int:
        lo, hi = GUARANTEED_SESSIONS_BACK
        return self.last_session - lo - int(self._draw(symbol, "guaranteed|day") * (hi - lo + 1))

    def _split(self, symbol: str, kind: str, ratio: tuple[int, int], session: int) -> Action:
        days = session_days()
        ex = int(days[session])
        if kind == "forward_split":  # FBL, NVDL, SRE: record two sessions before, payable one before
            return Action(kind, symbol, self._cusip(symbol), ex, ex, int(days[session - 2]), int(days[session - 1]),
                          *ratio)
        return Action(kind, symbol, self._cusip(symbol), ex, ex, ex, ex, *ratio,
                      old_cusip=cusip_for(f"{self.seed}|{symbol}|before|{ex}"))

    def dividends(self, symbol: str) -> tuple[Action, ...]:
        return self._of_active(self._dividends, symbol, self._generate_dividends)

    def _generate_dividends(self, symbol: str) -> list[Action]:
        guaranteed = self.guaranteed_kinds.get(symbol)
        if guaranteed == "cash_dividend":
            sessions = [self._guaranteed_session(symbol)]
        elif guaranteed or self.last_session < 2 or self._draw(symbol, "dividend") >= DIVIDEND_PAYER_SHARE:
            return []
        else:
            first = 1 + int(self._draw(symbol, "dividend|start") * (self.last_session - 1) / 2)
            sessions = list(range(first, self.last_session + 1, SESSIONS_PER_QUARTER))
        days = session_days()
        lo, hi = DIVIDEND_YIELD_PER_QUARTER
        quarterly_yield = lo + self._draw(symbol, "dividend|yield") * (hi - lo)
        lag = 8 + int(self._draw(symbol, "dividend|payable") * 13)
        ex_sessions = np.array(sessions)
        before = days[ex_sessions - 1]
        # The raw price level the day before: the generator's day anchor, times any later split's ratio.
        factors = self.split_factors(symbol)
        level = BarGenerator(symbol, crypto=False)._day_anchor(before) * factors.ratio[factors.at(before)]
        ex = days[ex_sessions]
        record_sessions = np.where(ex >= day_number(T_PLUS_ONE_FROM), ex_sessions, ex_sessions + 1)
        payable = days[record_sessions + lag]
        rates = np.maximum(0.01, np.round(quarterly_yield * level, 2))
        cusip = self._cusip(symbol)
        return [Action("cash_dividend", symbol, cusip, p, e, r, p, rate) for e, r, p, rate in
                zip(ex.tolist(), days[record_sessions].tolist(), payable.tolist(), rates.tolist())]

    def split_factors(self, symbol: str) -> Splits:
        cached = self._split_factors.get(symbol)
        if cached is None:
            cached = self._split_factors[symbol] = Splits.of(self.splits(symbol))
        return cached

    # --- bars ------------------------------------------------------------------------------------
    def raw_bars(self, symbol: str, bars: Bars) -> Bars:
        """The raw (unadjusted) bars: before each split's ex-date, prices x ratio and volumes / ratio."""
        factors = self.split_factors(symbol)
        if not len(factors.ex) or not len(bars):
            return bars
        at = factors.at(bar_days(bars.t))
        ratio, old = factors.ratio[at], factors.old[at]
        if np.all(ratio == 1):
            return bars
        before = ratio != 1
        scale = lambda x: np.where(before, _round_price(x * ratio), x)  # noqa: E731
        # Whole shares that split adjustment turns back into whole shares: a multiple of the old rates.
        volume = np.where(before, np.maximum(old, np.round(bars.v / ratio / old).astype(np.int64) * old), bars.v)
        return Bars(bars.t, scale(bars.o), scale(bars.h), np.maximum(scale(bars.l), 1e-4), scale(bars.c),
                    volume.astype(np.int64), bars.n, np.where(before, np.round(bars.vw * ratio, 4), bars.vw))

    def adjusted_bars(self, symbol: str, bars: Bars, adjustments: set[str]) -> Bars:
        """Raw bars adjusted by the standard backward method for `adjustments` (see the module docstring)."""
        if not adjustments or not len(bars):
            return bars
        days = bar_days(bars.t)
        price = np.ones(len(bars))
        volume = bars.v
        if "split" in adjustments and len(self.split_factors(symbol).ex):
            factors = self.split_factors(symbol)
            at = factors.at(days)
            price = price / factors.ratio[at]
            volume = bars.v // factors.old[at] * factors.new[at]  # exact: raw volumes are multiples of old
        if "dividend" in adjustments and self.dividends(symbol):
            price = price * self._dividend_factors(symbol, days)
        changed = price != 1
        if not changed.any():
            return Bars(bars.t, bars.o, bars.h, bars.l, bars.c, volume.astype(np.int64), bars.n, bars.vw)
        scale = lambda x: np.where(changed, _round_price(x * price), x)  # noqa: E731
        return Bars(bars.t, scale(bars.o), scale(bars.h), np.maximum(scale(bars.l), 1e-4), scale(bars.c),
                    volume.astype(np.int64), bars.n, scale(bars.vw))

    def _dividend_factors(self, symbol: str, days: np.ndarray) -> np.ndarray:
        dividends = sorted(self.dividends(symbol), key=lambda a: a.ex)
        factors = []
        for dividend in dividends:
            close = self.close_before(symbol, dividend.ex)
            factors.append(1.0 - dividend.new_rate / close if close else 1.0)
        later = np.append(np.cumprod(factors[::-1])[::-1], 1.0)
        return later[np.searchsorted([d.ex for d in dividends], days, "right")]

    def close_before(self, symbol: str, ex: int) -> float | None:
        """The raw SIP daily close of the last session before `ex` with a regular-session trade."""
        key = (symbol, ex)
        if key not in self._closes:
            labels, days = xnys_days().label, session_days()
            close = None
            for session in range(int(np.searchsorted(days, ex)) - 1, max(-1, int(np.searchsorted(days, ex)) - 21), -1):
                label = int(labels[session])
                for bars in BarGenerator(symbol, crypto=False).bars("1Day", label, label, feed="sip"):
                    close = float(self.raw_bars(symbol, bars).c[0])
                if close is not None:
                    break
            self._closes[key] = close
        return self._closes[key]

    # --- GET /v1/corporate-actions ---------------------------------------------------------------
    def labelled(self, action: Action) -> Action:
        """The action under the symbol its company traded as on its date (the key itself, unless renamed)."""
        if action.symbol not in self._relabelled or action.kind == "name_change":
            return action
        return action._replace(symbol=self.history.label(action.symbol,
                                                         day_date(action.ex if action.ex >= 0 else action.process)))

    def _keys_of(self, symbols: set[str]) -> list[str]:
        """The keys of every company that traded under any of `symbols`."""
        keys = set(symbols)
        if self.history is not None:
            keys |= {e.key for s in symbols for e, _, _ in self.history.spans_by_symbol.get(s, [])}
        return sorted(keys)

    def page(self, query: dict[str, list[str]], today: date) -> dict:
        request = ActionsQuery(query, today)
        if request.ids:
            if self._by_id is None:  # hashing every action once; ids queries are rare
                self._by_id = {a.id: a for a in map(self.labelled, self.everything())}
            by_id = {**self._by_id, **{a.id: a for a in self.name_changes}}
            candidates = [by_id[i] for i in request.ids if i in by_id]
        elif request.symbols:
            generated = [self.labelled(a) for k in self._keys_of(request.symbols)
                         for a in (*self.splits(k), *self.dividends(k))]
            candidates = [a for a in generated if a.concerns(request.symbols)]
            candidates += [a for a in self.name_changes if a.concerns(request.symbols)]
        else:
            candidates = [self.labelled(a)
                          for a in self.processed_between(day_number(request.start), day_number(request.end))]
        selected = sorted((a for a in candidates if request.wants(a)), key=Action.sort_key.fget,
                          reverse=request.descending)
        start = request.resume_position(selected)
        taken, rest = selected[start:start + request.limit], selected[start + request.limit:]
        grouped: dict[str, list] = {}
        for action in taken:
            grouped.setdefault(TYPES[action.kind], []).append(action.body())
        return {"corporate_actions": dict(sorted(grouped.items())),
                "next_page_token": encode_page_token(rest[0]) if rest else None}


def encode_page_token(action: Action) -> str:
    """Base64 of `CUSIP|process date|id`: the form of Alpaca's recorded token ("007CVR020|2024-02-15|60bf91c2-...",
    alpaca-py tests/data/test_corporate_actions.py); here it names the first action of the next page."""
    return base64.b64encode(f"{action.cusip}|{day_date(action.process).isoformat()}|{action.id}".encode()).decode()


def _csv(query: dict, name: str) -> list[str]:
    values = query.get(name)
    return [v.strip() for v in values[-1].split(",") if v.strip()] if values and values[-1] else []


def _date(query: dict, name: str, default: date) -> date:
    values = query.get(name)
    if not values or not values[-1]:
        return default
    try:
        return date.fromisoformat(values[-1])
    except ValueError:
        # The form of Alpaca's recorded bars message ("Invalid format for parameter start: ..."); tail the sandbox's.
        raise ActionsError(f"Invalid format for parameter {name}: {values[-1][:32]!r} is not a YYYY-MM-DD "
                           "date") from None


class ActionsQuery:
    """One validated corporate-actions request."""

    def __init__(self, query: dict[str, list[str]], today: date):
        self.symbols, self.cusips, self.ids = (set(_csv(query, "symbols")), set(_csv(query, "cusips")),
                                               set(_csv(query, "ids")))
        types = _csv(query, "types")
        for name in types:
            if name not in TYPES:
                raise ActionsError(f"invalid type: {name[:32]}; use some of {', '.join(TYPES)}")
        self.types = set(types)
        if self.ids and (self.symbols or self.cusips or self.types
                         or any(query.get(k, [""])[-1] for k in ("start", "end"))):
            raise ActionsError("ids cannot be combined with symbols, cusips, types, start or end")
        self.start, self.end = _date(query, "start", today), _date(query, "end", today)
        if self.end < self.start:
            raise ActionsError("end should not be before start")
        raw_limit = (query.get("limit") or [""])[-1]
        try:
            self.limit = int(raw_limit) if raw_limit else DEFAULT_LIMIT
        except ValueError:
            raise ActionsError(f"Invalid format for parameter limit: {raw_limit[:32]!r} is not an integer") from None
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ActionsError(f"invalid limit: {self.limit}; use 1 to {MAX_LIMIT}")
        if len(self.ids) > self.limit:
            raise ActionsError(f"invalid ids: {len(self.ids)} ids, more than the limit of {self.limit}")
        sort = (query.get("sort") or ["asc"])[-1] or "asc"
        if sort not in ("asc", "desc"):
            raise ActionsError(f"invalid sort: {sort[:32]}")
        self.descending = sort == "desc"
        token = (query.get("page_token") or [""])[-1]
        self.resume = _decode_page_token(token) if token else None

    def wants(self, action: Action) -> bool:
        """Alpaca filters on process_date ("The corporate actions are sorted by their process_date")."""
        if self.ids:
            return True
        return ((not self.types or action.kind in self.types) and (not self.cusips or action.has_cusip(self.cusips))
                and day_number(self.start) <= action.process <= day_number(self.end))

    def resume_position(self, ordered: list[Action]) -> int:
        if self.resume is None:
            return 0
        cusip, process, wanted = self.resume
        for i, action in enumerate(ordered):
            if action.process == process and action.cusip == cusip and action.id == wanted:
                return i
        raise ActionsError("invalid page token: it names no action of this query; repeat the query without it")


def _decode_page_token(token: str) -> tuple[str, int, str]:
    try:
        cusip, process, wanted = base64.b64decode(token.encode(), validate=True).decode().split("|")
        return cusip, day_number(date.fromisoformat(process)), wanted
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ActionsError(f"invalid page token: {token[:64]}") from None


def parse_adjustment(raw: str) -> set[str]:
    """`raw`, `split`, `dividend`, `spin-off`, `all` or a comma-separated combination (alpaca-trade-api-go
    CombineAdjustments; alpacahq's MCP server) -> the adjustments to apply."""
    names = set(raw.split(","))
    if not names <= {"raw", "all", *ADJUSTMENTS}:
        raise ActionsError(f"invalid adjustment: {raw[:64]}")
    return set(ADJUSTMENTS) if "all" in names else names - {"raw"}
