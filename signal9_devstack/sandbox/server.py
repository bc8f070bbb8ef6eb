"""The sandbox's HTTP server: Alpaca's REST API (assets, account, calendar, bars, corporate actions) plus test hooks.

It speaks the live API closely enough that alpaca-py's clients work against it
unchanged (`url_override`): the same paths, query parameters, JSON shapes,
paging with `next_page_token`, auth headers, error bodies and `X-RateLimit-*`
headers. Corporate actions (`GET /v1/corporate-actions`), the split cliffs of raw
stock bars and `adjustment=` bars all come from one source, actions.py; a
universe replaced through the hook records renames (same `id`, new symbol)
as `name_changes`. The `/_sandbox/*` hooks let tests replace the universe, inject faults
(errors, hangs, malformed JSON, bodies cut short), switch settings (the data
plan, the crypto daily stamp) and read which requests were served.

Error bodies differ by API, as Alpaca's do:
- Trading API (/v2/assets, /v2/account, /v2/calendar): `{"code": 40010000, "message": ...}`
  (alpacahq/Alpaca-API issue 89), except authentication: missing credentials
  403 `{"message": "forbidden."}` (alpacahq/Alpaca-API issue 228), wrong ones
  401 `{"message": "unauthorized"}` (https://alpaca.markets/learn/how-to-fix-common-trading-api-errors-at-alpaca;
  other quotes end it with a period); its rate limit 429 `{"code": 42910000, "message": "rate limit exceeded"}`
  (quoted in ccxt's ts/src/alpaca.ts). The contract corpus holds each of these bodies.
- Market data API (/v2/stocks/bars, /v1beta3/crypto/us/bars, /v1/corporate-actions): only a message.
  400 for an invalid parameter value (alpacahq/alpaca-docs historical.md lists
  400 "Invalid value for query parameter"; recorded bodies quoted in public
  code: `{"message":"invalid timeframe: 30Sec"}`, "end should not be before
  start", "Invalid format for parameter start", `{"message":"invalid symbol: 3USL"}`;
  alpacahq/alpaca-py issue 610: "timeframe period number is larger than the allowed maximum of 59");
  403 `{"message": "forbidden."}` for missing or wrong credentials
  (https://docs.alpaca.markets/docs/market-data-faq: "403 if the request was not
  authenticated / the provided credentials were incorrect"; body as in
  https://forum.alpaca.markets/t/apierror-token-is-not-authorized-for-this-scope-code-40110000/4315);
  403 `{"code": 42210000, "message": "subscription does not permit querying recent SIP data"}`
  (same FAQ, which prints this body with its code); 429 `{"message": "too many requests."}`
  (a measured body quoted in public code, whose source could not be named: the one text here without a
  recording in the corpus); a crypto pair not of the form BASE/QUOTE 400
  `{"message": "Invalid symbol(s): X does not match ^[A-Z]+/[A-Z]+$"}` (quoted in ccxt's ts/src/alpaca.ts), a
  well-formed pair Alpaca does not know 200 without bars (alpacahq/alpaca-docs issue 59). Texts the sandbox
  could not find recorded (missing symbols, limit, sort, feed, adjustment, page token) follow the same
  `invalid X: value` form.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import collections
import functools
import json
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from signal9_devstack.sandbox.actions import (
    ActionsError,
    CorporateActions,
    name_change,
    new_york_today,
    parse_adjustment,
)
from signal9_devstack.sandbox.bars import (
    CRYPTO_DAILY_STAMPS,
    UTC_MIDNIGHT,
    BarGenerator,
    Bars,
    canonical_timeframe,
    xnys_days,
)
from signal9_devstack.sandbox.history import Entity, History, HistoryError, listing_day

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
WINDOW_S = 60.0
ASSET_CLASSES = {"us_equity", "us_option", "crypto"}
# historical.md: raw, split, dividend, all; alpaca-trade-api-go (AdjustmentSpinOff, CombineAdjustments) and
# alpacahq's MCP server (get_stock_bars) add spin-off and comma-separated combinations. See actions.py.
# alpaca-py 0.44's DataFeed enum (alpaca/data/enums.py).
FEEDS = ("sip", "iex", "delayed_sip", "otc", "boats", "overnight")
# Alpaca's Basic (free) and Algo Trader Plus (paid) plans. A request that names no feed gets "the 'best'
# available feed based on the user's subscription", and "the end parameter must be at least 15 minutes old
# to query SIP data without a subscription" (https://docs.alpaca.markets/docs/market-data-faq); Alpaca's
# Dan Whitnable: "As long as the specified end datetime is not within 15 minutes of the current time, both
# the free and the paid Alpaca data plans will return bars based upon SIP data. However ... if the end
# datetime includes the most current 15 minutes, the free data plan will return bars based only upon trades
# executed on the IEX exchange" (https://forum.alpaca.markets/t/open-close-daily-bar-prices-vs-open-close-auction-prices-on-primary-exchange/14227).
# The older reference said "Default is iex for free plans and sip for paid" (alpaca-docs historical.md).
PLANS = ("free", "paid")
RECENT_SIP_S = 15 * 60
# The FAQ's curl output for a free key asking for recent SIP data, listed under "Why am I getting HTTP 403".
RECENT_SIP_REFUSED = "subscription does not permit querying recent SIP data"
RECENT_SIP_CODE = 42210000
# Stock symbols as Alpaca spells them (BRK.B, F.PRB, FLYX.WS); anything else (digits, dashes) is refused
# with 400 "invalid symbol: X" (recorded for 3USL, CSP1, SAAB-B.ST), while a well-formed symbol Alpaca does
# not know answers 200 without an entry (recorded `{"bars":{},"next_page_token":null}`).
STOCK_SYMBOL = re.compile(r"^[A-Z]+(?:[./][A-Z]+)*$")
CRYPTO_PAIR = "^[A-Z]+/[A-Z]+$"
DATA_API_PREFIXES = ("/v2/stocks/", "/v1beta3/crypto/", "/v1/corporate-actions")
# "Historical crypto market data endpoints have been made public and require no authentication"
# (https://alpaca.markets/docs/api-references/market-data-api/crypto-pricing-data/).
PUBLIC_PATHS = ("/v1beta3/crypto/",)
FAULT_KEYS = {"error_rate", "error_statuses", "hang_s", "hang_every", "malformed_rate", "truncate_rate", "paths",
              "invalid_bar_symbols"}
REVISIONS = ("final", "late_reports")  # every day as finally reported, or as known at the moment of the request
SETTING_CHOICES = {"plan": PLANS, "crypto_daily_stamp": CRYPTO_DAILY_STAMPS, "revisions": REVISIONS}
NEW_YORK = ZoneInfo("America/New_York")


class ApiError(Exception):
    """An error answer: HTTP status plus a body, `{"message"}` or the trading API's `{"code", "message"}`."""

    def __init__(self, status: int, message: str, code: int | None = None):
        super().__init__(message)
        self.status = status
        self.body: dict = {"message": message} if code is None else {"code": code, "message": message}


def trading_error(status: int, message: str) -> ApiError:
    """The trading API's shape: a code of the status followed by 10000 (40010000, 40410000, 42210000)."""
    return ApiError(status, message, status * 100_000 + 10_000)


def is_data_api(path: str) -> bool:
    return path.startswith(DATA_API_PREFIXES)


def api_error_for(path: str):
    """How errors on `path` are shaped: message-only on the market data API, with a code on the trading API."""
    return ApiError if is_data_api(path) else trading_error


@dataclass
class Settings:
    """What the real service would fix per account: the data plan, and how crypto daily bars are stamped."""

    plan: str = "free"
    crypto_daily_stamp: str = UTC_MIDNIGHT
    revisions: str = "final"  # "late_reports": recent equity days lack their late-reported volume (sandbox/bars.py)

    def updated(self, changes: Any) -> Settings:
        if not isinstance(changes, dict) or set(changes) - set(SETTING_CHOICES):
            raise ApiError(422, f"settings must be an object with keys among {sorted(SETTING_CHOICES)}")
        for name, value in changes.items():
            if value not in SETTING_CHOICES[name]:
                raise ApiError(422, f"invalid {name}: {value!r}; use one of {list(SETTING_CHOICES[name])}")
        return Settings(**{**self.__dict__, **changes})


@dataclass
class Faults:
    error_rate: float = 0.0
    error_statuses: list[int] = field(default_factory=lambda: [500])
    hang_s: float = 0.0
    hang_every: int = 0
    malformed_rate: float = 0.0
    truncate_rate: float = 0.0  # the body is cut short of its Content-Length and the connection closed
    paths: list[str] = field(default_factory=list)  # empty: every API path
    invalid_bar_symbols: list[str] = field(default_factory=list)  # their first bar in a page gets a negative low

    @classmethod
    def parse(cls, body: Any) -> Faults:
        if not isinstance(body, dict) or set(body) - FAULT_KEYS:
            raise ApiError(422, f"faults must be an object with keys among {sorted(FAULT_KEYS)}")
        try:
            faults = cls(**body)
            faults.error_rate, faults.malformed_rate = float(faults.error_rate), float(faults.malformed_rate)
            faults.truncate_rate = float(faults.truncate_rate)
            faults.hang_s, faults.hang_every = float(faults.hang_s), int(faults.hang_every)
            faults.error_statuses = [int(s) for s in faults.error_statuses]
            faults.paths = [str(p) for p in faults.paths]
            faults.invalid_bar_symbols = [str(p) for p in faults.invalid_bar_symbols]
        except (TypeError, ValueError) as exc:
            raise ApiError(422, f"invalid faults: {exc}") from None
        rates = (faults.error_rate, faults.malformed_rate, faults.truncate_rate)
        if not all(0 <= rate <= 1 for rate in rates) or faults.hang_s < 0 or faults.hang_every < 0:
            raise ApiError(422, "rates must be within [0, 1]; hang_s and hang_every must be >= 0")
        if not faults.error_statuses or any(not 400 <= s <= 599 for s in faults.error_statuses):
            raise ApiError(422, "error_statuses must be a non-empty list of 4xx/5xx statuses")
        return faults

    def applies_to(self, path: str) -> bool:
        return not self.paths or any(path.startswith(p) for p in self.paths)


class SandboxState:
    """Everything the sandbox serves and records; shared by the handler threads."""

    def __init__(self, universe: list[dict], *, api_key: str, secret_key: str, rate_limit_per_minute: int, seed: int,
                 plan: str = "free", crypto_daily_stamp: str = UTC_MIDNIGHT):
        self.api_key, self.secret_key = api_key, secret_key
        self.rate_limit_per_minute = rate_limit_per_minute
        try:  # the settings a reset returns to
            self.default_settings = Settings().updated({"plan": plan, "crypto_daily_stamp": crypto_daily_stamp})
        except ApiError as exc:
            raise ValueError(exc.body["message"]) from None
        self.lock = threading.Lock()
        self.stop = threading.Event()  # ends injected hangs on reset and shutdown
        self.fault_rng = random.Random(seed)
        self.seed = seed
        self.universe: list[dict] = []
        self.history = History(universe)
        self.actions = CorporateActions([], seed=seed, today=new_york_today())
        self._serve(universe, self.history, [])
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.faults = Faults()
            self.settings = self.default_settings
            self.requests: list[dict] = []
            self.clock: datetime | None = None  # the moment the bars endpoint answers as of (None: now)
            self.windows: dict[str, collections.deque] = collections.defaultdict(collections.deque)
            self.api_requests_seen = 0
        self.stop.set()
        self.stop = threading.Event()

    def set_universe(self, universe: list[dict], effective: date | None = None) -> None:
        """Serve `universe` from `effective` (a New York date; default the trading day a list published now is for):
        renames, listings and delistings are dated there in the symbol history the bars endpoint resolves `asof`
        against; renames become name_changes."""
        day = effective or listing_day()
        with self.lock:
            try:
                history, renames = self.history.changed(universe, day)
            except HistoryError as exc:
                raise ApiError(422, str(exc)) from None
            name_changes = [*self.actions.name_changes,
                            *(name_change(old, new, day, self.seed) for old, new in renames)]
            self._serve(universe, history, name_changes)

    def _serve(self, universe: list[dict], history: History, name_changes: list) -> None:
        by_key: dict[str, dict] = {}
        for asset in universe:
            for key in (asset.get("symbol"), asset.get("id")):
                if isinstance(key, str):
                    by_key.setdefault(key, asset)
        acting = [history.entities[a["id"]].key for a in universe
                  if isinstance(a, dict) and a.get("class") == "us_equity" and a.get("status") == "active"
                  and isinstance(a.get("id"), str) and a["id"] in history.entities]
        self.actions = CorporateActions(acting, seed=self.seed, today=new_york_today(), name_changes=name_changes,
                                        history=history)
        self.history = history
        self.universe = universe
        self.assets_by_key = by_key
        self.assets_cache: dict[tuple, bytes] = {}

    # --- admission: auth, rate limit, faults --------------------------------------------------
    def authenticate(self, key: str | None, secret: str | None, path: str) -> str:
        """The rate-limit window of an admitted request (its key, or "anonymous" on public paths)."""
        if not key and not secret:
            if path.startswith(PUBLIC_PATHS):
                return "anonymous"
            raise ApiError(403, "forbidden.")
        if key != self.api_key or secret != self.secret_key:
            raise ApiError(403, "forbidden.") if is_data_api(path) else ApiError(401, "unauthorized")
        return key

    def admit(self, key: str, now: float) -> dict[str, str]:
        """Take one request from the key's sliding 60 s window; the rate-limit headers to send."""
        with self.lock:
            window = self.windows[key]
            while window and window[0] <= now - WINDOW_S:
                window.popleft()
            allowed = len(window) < self.rate_limit_per_minute
            if allowed:
                window.append(now)
            reset = int(window[0] + WINDOW_S) + 1 if window else int(now)
            headers = {
                "X-RateLimit-Limit": str(self.rate_limit_per_minute),
                "X-RateLimit-Remaining": str(max(0, self.rate_limit_per_minute - len(window))),
                "X-RateLimit-Reset": str(reset),
            }
        if not allowed:
            raise RateLimited(headers)
        return headers

    def draw_fault(self, path: str) -> tuple[float, int | None, bool, bool]:
        """(seconds to hang, status to fail with, whether to send malformed JSON, whether to cut the body short)."""
        with self.lock:
            self.api_requests_seen += 1
            f = self.faults
            if not f.applies_to(path):
                return 0.0, None, False, False
            hang = f.hang_s if f.hang_every and self.api_requests_seen % f.hang_every == 0 else 0.0
            status = self.fault_rng.choice(f.error_statuses) if self.fault_rng.random() < f.error_rate else None
            malformed = status is None and self.fault_rng.random() < f.malformed_rate
            truncated = (status is None and not malformed and f.truncate_rate > 0
                         and self.fault_rng.random() < f.truncate_rate)
            return hang, status, malformed, truncated

    def record(self, method: str, path: str, status: int, arrived: float) -> None:
        with self.lock:
            self.requests.append({"t": arrived, "method": method, "path": path, "status": status})


class RateLimited(Exception):
    def __init__(self, headers: dict[str, str]):
        super().__init__("rate limit exceeded")
        self.headers = headers


# --- query parsing -------------------------------------------------------------------------------
def _one(query: dict[str, list[str]], name: str, default: str | None = None) -> str | None:
    values = query.get(name)
    return values[-1] if values else default


def _parse_time(query: dict, name: str, default: datetime) -> datetime:
    raw = _one(query, name)
    if raw is None or raw == "":
        return default
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), datetime.min.time(), tzinfo=timezone.utc)
        parsed = datetime.fromisoformat(raw.replace(" ", "+"))
    except ValueError:
        # Recorded: 400 "Invalid format for parameter start: ..."; the tail is the sandbox's.
        raise ApiError(400, f"Invalid format for parameter {name}: error parsing {raw!r} as RFC3339 or "
                            "2006-01-02 time") from None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def _parse_limit(query: dict) -> int:
    raw = _one(query, "limit")
    if raw in (None, ""):
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(400, f"Invalid format for parameter limit: {raw!r} is not an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"invalid limit: {limit}; use 1 to {MAX_LIMIT}")
    return limit


def _parse_symbols(query: dict, *, crypto: bool) -> list[str]:
    raw = _one(query, "symbols")
    if not raw:
        raise ApiError(400, "missing symbols")
    symbols = [s.strip() for s in raw.split(",")]
    for symbol in symbols:
        if crypto and not re.match(CRYPTO_PAIR, symbol):
            raise ApiError(400, f"Invalid symbol(s): {symbol[:64]} does not match {CRYPTO_PAIR}")
        if not symbol or (not crypto and not STOCK_SYMBOL.match(symbol)):
            raise ApiError(400, f"invalid symbol: {symbol[:64]}")
    return symbols


def _parse_timeframe(query: dict) -> str:
    raw = _one(query, "timeframe") or ""
    timeframe = canonical_timeframe(raw)
    if timeframe is None:
        too_large = re.fullmatch(r"([0-9]+)(Min|T|Hour|H)", raw)
        if too_large and int(too_large.group(1)) > 0:
            maximum = 59 if too_large.group(2) in ("Min", "T") else 23
            raise ApiError(400, f"timeframe period number is larger than the allowed maximum of {maximum}")
        if re.fullmatch(r"[0-9]+(Week|W|Month|M)", raw):
            raise ApiError(400, f"the sandbox serves Min, Hour and 1Day bars, not {raw[:32]} (Alpaca also serves "
                                "1Week and 1, 2, 3, 6 or 12Month)")
        raise ApiError(400, f"invalid timeframe: {raw[:32]}")
    return timeframe


def _parse_adjustment(query: dict) -> set[str]:
    try:
        return parse_adjustment(_one(query, "adjustment", "raw") or "raw")
    except ActionsError as exc:
        raise ApiError(400, str(exc)) from None


def _epoch_minute(moment: datetime, *, ceil: bool) -> int:
    seconds = moment.timestamp()
    return int(-(-seconds // 60)) if ceil else int(seconds // 60)


def encode_page_token(symbol: str, minute: int, *, daily: bool) -> str:
    """Base64 of `SYMBOL|D|<epoch ns>` (daily) or `SYMBOL|M|<epoch ns>`: the form of Alpaca's tokens
    (decoded from recorded bodies, e.g. "GE|D|1712116800000000000" in alpaca-trade-api-go's
    marketdata/rest_test.go). Here it names the first bar of the next page; Alpaca documents it as opaque."""
    return base64.b64encode(f"{symbol}|{'D' if daily else 'M'}|{minute * 60_000_000_000}".encode()).decode()


def decode_page_token(token: str) -> tuple[str, int]:
    try:
        symbol, _, stamp = base64.b64decode(token.encode(), validate=True).decode().rsplit("|", 2)
        if symbol and stamp.isdigit():
            return symbol, int(stamp) // 60_000_000_000
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    raise ApiError(400, f"invalid page token: {token[:64]}")


def _bar_dicts(bars: Bars) -> list[dict]:
    """Bars in Alpaca's JSON form, keys in the alphabetical order the live API emits."""
    stamps = np.datetime_as_string(bars.t.astype("datetime64[m]"), unit="s")
    columns = [bars.c.tolist(), bars.h.tolist(), bars.l.tolist(), bars.n.tolist(), bars.o.tolist(), bars.v.tolist(),
               bars.vw.tolist()]
    return [
        {"c": c, "h": h, "l": low, "n": n, "o": o, "t": f"{t}Z", "v": v, "vw": vw}
        for t, c, h, low, n, o, v, vw in zip(stamps.tolist(), *columns)
    ]


class BarsQuery:
    """One bars request, validated: which symbols, timeframe, window, feed, page and order."""

    def __init__(self, query: dict, history: History, *, crypto: bool, settings: Settings, now: datetime,
                 actions: CorporateActions | None = None):
        symbols = _parse_symbols(query, crypto=crypto)
        self.history = history
        # Crypto has no asof: its pairs are resolved as of today, as a stock without one is.
        self.asof = new_york_today() if crypto else _parse_asof(query)
        self.timeframe = _parse_timeframe(query)
        self.start = _parse_time(query, "start", now.replace(hour=0, minute=0, second=0, microsecond=0))
        self.end = _parse_time(query, "end", now)
        if self.end < self.start:
            raise ApiError(400, "end should not be before start")
        self.limit = _parse_limit(query)
        sort = _one(query, "sort", "asc")
        if sort not in ("asc", "desc"):
            raise ApiError(400, f"invalid sort: {sort[:32]}")
        self.descending = sort == "desc"
        self.feed = "crypto" if crypto else self._feed(query, settings, now)
        self.adjustments = set() if crypto else _parse_adjustment(query)
        self.actions = None if crypto else actions  # crypto has no corporate actions
        token = _one(query, "page_token")
        self.resume = decode_page_token(token) if token else None
        known = history.known_symbols("crypto" if crypto else "us_equity")
        self.symbols = sorted({s for s in symbols if s in known})  # well-formed but unknown: no entry, as Alpaca
        self.crypto = crypto
        self.crypto_daily = settings.crypto_daily_stamp
        self.reported_by = int(now.timestamp()) // 60 if settings.revisions == "late_reports" else None

    def _feed(self, query: dict, settings: Settings, now: datetime) -> str:
        recent = self.end > now - timedelta(seconds=RECENT_SIP_S)
        feed = _one(query, "feed") or ("iex" if settings.plan == "free" and recent else "sip")
        if feed not in FEEDS:
            raise ApiError(400, f"invalid feed: {feed[:32]}")
        if feed == "sip" and settings.plan == "free" and recent:
            raise ApiError(403, RECENT_SIP_REFUSED, RECENT_SIP_CODE)
        if feed == "delayed_sip" and recent:
            self.end = now - timedelta(seconds=RECENT_SIP_S)
        return feed

    def page(self) -> dict:
        """One page: up to `limit` bars across all symbols, ordered by symbol then time."""
        out: dict[str, list] = {}
        remaining = self.limit
        first, last = _epoch_minute(self.start, ceil=True), _epoch_minute(self.end, ceil=False)
        daily = self.timeframe == "1Day"
        symbols = self.symbols
        if self.resume:
            symbols = [s for s in symbols if s >= self.resume[0]]
        for symbol in symbols:
            lo, hi = first, last
            if self.resume and symbol == self.resume[0]:
                lo, hi = (lo, self.resume[1]) if self.descending else (self.resume[1], hi)
            for bars in self._bars(symbol, lo, hi):
                if remaining == 0:
                    return {"bars": out, "next_page_token": encode_page_token(symbol, int(bars.t[0]), daily=daily)}
                take = bars.select(slice(0, remaining))
                out.setdefault(symbol, []).extend(_bar_dicts(take))
                remaining -= len(take)
                if len(take) < len(bars):
                    return {"bars": out,
                            "next_page_token": encode_page_token(symbol, int(bars.t[len(take)]), daily=daily)}
        return {"bars": out, "next_page_token": None}

    def _bars(self, symbol: str, lo: int, hi: int) -> Iterator[Bars]:
        if self.feed in ("boats", "overnight"):
            return  # the sandbox models no overnight (20:00-04:00) trading
        feed = "iex" if self.feed == "iex" else "sip"  # delayed_sip and otc: the consolidated minutes
        chunks = (bars for entity, first, last in self._sources(symbol, lo, hi)
                  for bars in self._entity_bars(entity, first, last, feed))
        if not self.descending:
            yield from chunks
            return
        for bars in reversed(list(chunks)):
            yield bars.select(slice(None, None, -1))

    def _sources(self, symbol: str, lo: int, hi: int) -> list[tuple[Entity, int, int]]:
        """(company, first minute, last minute) whose bars answer `symbol`, in time order: the company holding it as
        of `asof` over the whole window, else (no mapping, or nobody held it then) whoever traded under the string."""
        entity = self.history.holder(symbol, self.asof) if self.asof is not None else None
        spans = [(entity, None, None)] if entity is not None else self.history.literal(symbol)
        sources = []
        for company, start, end in sorted(spans, key=lambda s: s[1] or date.min):
            for trade_start, trade_end in company.trading:
                begin, stop = _later(start, trade_start), _earlier(end, trade_end)
                first = lo if begin is None else max(lo, self._day_minute(begin))
                last = hi if stop is None else min(hi, self._day_minute(stop) - 1)
                if first <= last:
                    sources.append((company, first, last))
        return sorted(sources, key=lambda s: s[1])

    def _day_minute(self, day: date) -> int:
        """The first minute (epoch) of a trading day: midnight New York for stocks, UTC for crypto."""
        if self.crypto:
            return (day - date(1970, 1, 1)).days * 1440
        return int(datetime.combine(day, datetime.min.time(), NEW_YORK).timestamp()) // 60

    def _entity_bars(self, entity: Entity, lo: int, hi: int, feed: str) -> Iterator[Bars]:
        chunks = BarGenerator(entity.key, crypto=self.crypto).bars(self.timeframe, lo, hi, feed=feed,
                                                                   crypto_daily=self.crypto_daily,
                                                                   reported_by=self.reported_by)
        if self.actions is None:
            return chunks
        # Raw bars show split cliffs; adjustments are computed from the same actions.
        return (self.actions.adjusted_bars(entity.key, self.actions.raw_bars(entity.key, bars), self.adjustments)
                for bars in chunks)


def _later(a: date | None, b: date | None) -> date | None:
    return b if a is None else a if b is None else max(a, b)


def _earlier(a: date | None, b: date | None) -> date | None:
    return b if a is None else a if b is None else min(a, b)


def _parse_asof(query: dict) -> date | None:
    """The asof date (default today, New York); None for "-", which skips symbol mapping."""
    raw = _one(query, "asof")
    if raw in (None, ""):
        return new_york_today()
    if raw == "-":
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        # The form of Alpaca's recorded message for start ("Invalid format for parameter start: ...");
        # tail the sandbox's.
        raise ApiError(400, f"Invalid format for parameter asof: {raw[:32]!r} is not a YYYY-MM-DD date or -") from None


# --- routes --------------------------------------------------------------------------------------
def route_assets(state: SandboxState, query: dict) -> bytes:
    status, asset_class = _one(query, "status"), _one(query, "asset_class")
    exchange, attributes = _one(query, "exchange"), _one(query, "attributes")
    if status not in (None, "", "active", "inactive"):
        raise trading_error(422, f"invalid status: {status!r}; use active or inactive")
    if asset_class not in (None, "") and asset_class not in ASSET_CLASSES:
        raise trading_error(422, f"invalid asset_class: {asset_class!r}; use one of {sorted(ASSET_CLASSES)}")
    key = (status, asset_class, exchange, attributes)
    with state.lock:
        cached, universe = state.assets_cache.get(key), state.universe
    if cached is not None:
        return cached
    wanted_attributes = set(filter(None, (attributes or "").split(",")))
    selected = [
        a for a in universe
        if (not status or a.get("status") == status)
        and (not asset_class or a.get("class") == asset_class)
        and (not exchange or a.get("exchange") == exchange)
        and (not wanted_attributes or wanted_attributes & set(a.get("attributes") or []))
    ]
    body = json.dumps(selected).encode()
    with state.lock:
        if state.universe is universe:
            state.assets_cache[key] = body
    return body


def route_asset(state: SandboxState, symbol_or_id: str) -> bytes:
    asset = state.assets_by_key.get(symbol_or_id) or state.assets_by_key.get(_slash_pair(symbol_or_id))
    if asset is None:
        raise trading_error(404, f"asset not found for {symbol_or_id[:64]!r}")
    return json.dumps(asset).encode()


def _slash_pair(symbol: str) -> str:
    """Alpaca accepts BTCUSD for BTC/USD."""
    for quote in ("USDT", "USDC", "USD", "BTC"):
        if symbol.endswith(quote) and len(symbol) > len(quote) and "/" not in symbol:
            return f"{symbol[: -len(quote)]}/{quote}"
    return symbol


def route_account(state: SandboxState) -> bytes:
    return json.dumps({
        "id": "8f3c6a5e-2b1d-4c0e-9a7f-5d4e3c2b1a00", "account_number": "PA3SANDBOX01", "status": "ACTIVE",
        "crypto_status": "ACTIVE", "currency": "USD", "buying_power": "200000", "regt_buying_power": "200000",
        "daytrading_buying_power": "0", "non_marginable_buying_power": "100000", "cash": "100000",
        "accrued_fees": "0", "portfolio_value": "100000", "pattern_day_trader": False, "trading_blocked": False,
        "transfers_blocked": False, "account_blocked": False, "created_at": "2024-01-02T14:30:00Z",
        "trade_suspended_by_user": False, "multiplier": "2", "shorting_enabled": True, "equity": "100000",
        "last_equity": "100000", "long_market_value": "0", "short_market_value": "0", "initial_margin": "0",
        "maintenance_margin": "0", "last_maintenance_margin": "0", "sma": "0", "daytrade_count": 0,
        "options_buying_power": "100000", "options_approved_level": 0, "options_trading_level": 0,
    }).encode()


# Settlement: T+2 trading days, T+1 for trades from 2024-05-28 (SEC Rule 15c6-1). Recorded Alpaca rows:
# 1970-01-02 -> 1970-01-06, 2025-07-03 -> 2025-07-07, 2026-11-27 -> 2026-11-30.
T_PLUS_ONE_FROM = date(2024, 5, 28)


@functools.lru_cache(maxsize=1)
def calendar_rows() -> tuple[list[date], list[dict]]:
    """Every /v2/calendar row, in date order. `session_open`/`session_close` are the extended-hours bounds:
    "0400"/"2000", "1700" on early closes (recorded rows, e.g. 2026-11-27 close 13:00 session_close 1700)."""
    import pandas as pd

    days = xnys_days()
    local = [pd.to_datetime(getattr(days, f) * 60, unit="s", utc=True).tz_convert("America/New_York")
             for f in ("regular_open", "regular_close", "open", "close")]
    dates = [o.date() for o in local[0]]
    rows = []
    for i, (o, c, session_open, session_close) in enumerate(zip(*local)):
        settles = i + (1 if dates[i] >= T_PLUS_ONE_FROM else 2)
        settlement = dates[settles] if settles < len(dates) else dates[i] + timedelta(days=settles - i)
        rows.append({"date": dates[i].isoformat(), "open": o.strftime("%H:%M"), "close": c.strftime("%H:%M"),
                     "session_open": session_open.strftime("%H%M"), "session_close": session_close.strftime("%H%M"),
                     "settlement_date": settlement.isoformat()})
    return dates, rows


def route_calendar(query: dict) -> bytes:
    start, end = _one(query, "start"), _one(query, "end")
    try:
        lo = date.fromisoformat(start[:10]) if start else date.min
        hi = date.fromisoformat(end[:10]) if end else date.max
    except ValueError:
        raise trading_error(400, f"invalid start/end: {start!r}/{end!r}; use YYYY-MM-DD") from None
    dates, rows = calendar_rows()
    return json.dumps(rows[bisect.bisect_left(dates, lo):bisect.bisect_right(dates, hi)]).encode()


class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SandboxServer

    def log_message(self, format: str, *args: Any) -> None:  # the base class's name
        return  # requests are recorded in /_sandbox/stats; stderr stays quiet

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def _handle(self, method: str) -> None:
        state = self.server.state
        parsed = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parsed.path)
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        body = self._read_body()
        self._arrived = time.time()  # stats carry arrival times, which is what rate windows count
        if path.startswith("/_sandbox/"):
            self._hook(state, method, path, body, query)
            return
        headers: dict[str, str] = {}
        error = api_error_for(path)
        try:
            window = state.authenticate(self.headers.get("APCA-API-KEY-ID"), self.headers.get("APCA-API-SECRET-KEY"),
                                        path)
            headers = state.admit(window, self._arrived)
            hang, fault_status, malformed, truncated = state.draw_fault(path)
            if hang and state.stop.wait(hang):
                raise error(503, "sandbox reset")
            if fault_status:
                raise error(fault_status, f"injected fault {fault_status}")
            payload = self._route(state, method, path, query)
            if malformed:
                payload = payload[: max(1, len(payload) // 2)]
            self._send(200, payload, headers, method, path, cut_at=len(payload) // 2 if truncated else None)
        except RateLimited as exc:
            limited = (ApiError(429, "too many requests.") if is_data_api(path)
                       else trading_error(429, "rate limit exceeded"))
            self._send(429, json.dumps(limited.body).encode(), exc.headers, method, path)
        except ApiError as exc:
            self._send(exc.status, json.dumps(exc.body).encode(), headers, method, path)
        except Exception as exc:  # a sandbox bug must still answer in Alpaca's shape, never hang the client
            self._send(500, json.dumps(error(500, f"internal error: {type(exc).__name__}").body).encode(), headers,
                       method, path)

    def _route(self, state: SandboxState, method: str, path: str, query: dict) -> bytes:
        error = api_error_for(path)
        if method != "GET":
            raise error(405, f"method {method} not allowed on {path}")
        if path == "/v2/assets":
            return route_assets(state, query)
        if path.startswith("/v2/assets/"):
            return route_asset(state, path[len("/v2/assets/"):])
        if path == "/v2/account":
            return route_account(state)
        if path == "/v2/calendar":
            return route_calendar(query)
        if path in ("/v2/stocks/bars", "/v1beta3/crypto/us/bars"):
            crypto = path.startswith("/v1beta3")
            with state.lock:
                settings, history, actions = state.settings, state.history, state.actions
            page = BarsQuery(query, history, crypto=crypto, settings=settings,
                             now=state.clock or datetime.now(timezone.utc), actions=actions).page()
            for symbol in state.faults.invalid_bar_symbols:
                if page["bars"].get(symbol):
                    page["bars"][symbol][0]["l"] = -1.0
            return json.dumps(page).encode()
        if path == "/v1/corporate-actions":
            with state.lock:
                actions = state.actions
            try:
                return json.dumps(actions.page(query, new_york_today())).encode()
            except ActionsError as exc:
                raise ApiError(400, str(exc)) from None
        raise error(404, f"no such endpoint: {path}")

    def _hook(self, state: SandboxState, method: str, path: str, body: bytes, query: dict) -> None:
        try:
            if (method, path) == ("GET", "/_sandbox/stats"):
                with state.lock:
                    payload = json.dumps({"requests": list(state.requests)}).encode()
            elif (method, path) == ("PUT", "/_sandbox/universe"):
                universe = _json_body(body)
                if not isinstance(universe, list) or not all(isinstance(a, dict) for a in universe):
                    raise ApiError(422, "universe must be a JSON array of asset objects in the /v2/assets shape")
                state.set_universe(universe, _effective(query))
                payload = json.dumps({"assets": len(universe),
                                      "effective": state.history.last_change.isoformat()}).encode()
            elif (method, path) == ("POST", "/_sandbox/faults"):
                faults = Faults.parse(_json_body(body))
                with state.lock:
                    state.faults = faults
                payload = json.dumps(faults.__dict__).encode()
            elif (method, path) == ("GET", "/_sandbox/history"):
                with state.lock:
                    history = state.history
                payload = json.dumps({"entities": history.as_json()}).encode()
            elif (method, path) == ("GET", "/_sandbox/settings"):
                payload = json.dumps(state.settings.__dict__).encode()
            elif (method, path) == ("PUT", "/_sandbox/settings"):
                with state.lock:
                    state.settings = state.settings.updated(_json_body(body))
                payload = json.dumps(state.settings.__dict__).encode()
            elif (method, path) == ("PUT", "/_sandbox/clock"):
                now = _json_body(body).get("now") if isinstance(_json_body(body), dict) else ""
                try:
                    clock = datetime.fromisoformat(now.replace("Z", "+00:00")) if now is not None else None
                except (AttributeError, ValueError):
                    raise ApiError(422, 'clock must be {"now": "<ISO 8601 moment with its offset>"} '
                                        'or {"now": null}') from None
                if clock is not None and clock.tzinfo is None:
                    raise ApiError(422, f"clock {now!r} has no UTC offset; add Z or +00:00")
                with state.lock:
                    state.clock = clock
                payload = json.dumps({"now": clock.isoformat() if clock else None}).encode()
            elif (method, path) == ("POST", "/_sandbox/reset"):
                state.reset()
                payload = b'{"reset":true}'
            else:
                raise ApiError(404, f"no such sandbox hook: {method} {path}")
            self._send(200, payload, {}, None, path)
        except ApiError as exc:
            self._send(exc.status, json.dumps(exc.body).encode(), {}, None, path)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: bytes, headers: dict[str, str], method: str | None, path: str,
              cut_at: int | None = None) -> None:
        """Answer; with `cut_at`, announce the whole body but send only its first `cut_at` bytes, then hang up."""
        if method is not None:
            self.server.state.record(method, path, status, self._arrived)
        try:
            self.send_response(status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else None)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload if cut_at is None else payload[:cut_at])
            if cut_at is not None:
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout); nothing to answer


def _effective(query: dict) -> date | None:
    raw = _one(query, "effective")
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        raise ApiError(422, f"invalid effective: {raw[:32]!r}; use a YYYY-MM-DD New York date") from None


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise ApiError(422, f"request body is not JSON: {exc}") from None


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: SandboxState):
        super().__init__(address, SandboxHandler)
        self.state = state

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def shutdown(self) -> None:
        self.state.stop.set()
        super().shutdown()
