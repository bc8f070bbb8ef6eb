"""The sandbox's HTTP server: Alpaca's REST API (assets, account, calendar, bars) plus test hooks.

It speaks the live API closely enough that alpaca-py's clients work against it
unchanged (`url_override`): the same paths, query parameters, JSON shapes,
paging with `next_page_token`, auth headers, Alpaca-style error bodies and
`X-RateLimit-*` headers. The `/_sandbox/*` hooks let tests replace the
universe, inject faults (errors, hangs, malformed JSON, bodies cut short)
and read which requests were served.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import random
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import numpy as np

from signal9_pipeline.sandbox.bars import BarGenerator, Bars, canonical_timeframe, xnys_days

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
WINDOW_S = 60.0
ASSET_CLASSES = {"us_equity", "us_option", "crypto"}
ADJUSTMENTS = {"raw", "split", "dividend", "all"}
FEEDS = {"sip", "iex", "otc", "boats", "delayed_sip"}
FAULT_KEYS = {"error_rate", "error_statuses", "hang_s", "hang_every", "malformed_rate", "truncate_rate", "paths",
              "invalid_bar_symbols"}


class ApiError(Exception):
    """An Alpaca-style error answer: HTTP status plus `{"code", "message"}` body."""

    def __init__(self, status: int, message: str, code: int | None = None):
        super().__init__(message)
        self.status = status
        self.body = {"code": code or status * 100_000, "message": message}


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
    def parse(cls, body: Any) -> "Faults":
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

    def __init__(self, universe: list[dict], *, api_key: str, secret_key: str, rate_limit_per_minute: int, seed: int):
        self.api_key, self.secret_key = api_key, secret_key
        self.rate_limit_per_minute = rate_limit_per_minute
        self.lock = threading.Lock()
        self.stop = threading.Event()  # ends injected hangs on reset and shutdown
        self.fault_rng = random.Random(seed)
        self.set_universe(universe)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.faults = Faults()
            self.requests: list[dict] = []
            self.windows: dict[str, collections.deque] = collections.defaultdict(collections.deque)
            self.api_requests_seen = 0
        self.stop.set()
        self.stop = threading.Event()

    def set_universe(self, universe: list[dict]) -> None:
        by_key: dict[str, dict] = {}
        bar_symbols: dict[str, set[str]] = {"us_equity": set(), "crypto": set()}
        for asset in universe:
            for key in (asset.get("symbol"), asset.get("id")):
                if isinstance(key, str):
                    by_key.setdefault(key, asset)
            if isinstance(asset.get("symbol"), str) and isinstance(asset.get("class"), str) and asset["class"] in bar_symbols:
                bar_symbols[asset["class"]].add(asset["symbol"])
        with self.lock:
            self.universe = universe
            self.assets_by_key = by_key
            self.bar_symbols = bar_symbols
            self.assets_cache: dict[tuple, bytes] = {}

    # --- admission: auth, rate limit, faults --------------------------------------------------
    def authenticate(self, key: str | None, secret: str | None) -> None:
        if not key or not secret:
            raise ApiError(401, "request is not authorized: send APCA-API-KEY-ID and APCA-API-SECRET-KEY", 40110000)
        if key != self.api_key:
            raise ApiError(401, "request is not authorized: unknown APCA-API-KEY-ID", 40110000)
        if secret != self.secret_key:
            raise ApiError(403, "forbidden: APCA-API-SECRET-KEY does not match the key", 40310000)

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
            truncated = status is None and not malformed and f.truncate_rate > 0 and self.fault_rng.random() < f.truncate_rate
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
        raise ApiError(422, f"invalid {name}: {raw!r}; use RFC-3339 (2024-01-02T14:30:00Z) or YYYY-MM-DD") from None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def _parse_limit(query: dict) -> int:
    raw = _one(query, "limit")
    if raw in (None, ""):
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(422, f"invalid limit: {raw!r}; use an integer from 1 to {MAX_LIMIT}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(422, f"invalid limit: {limit}; use an integer from 1 to {MAX_LIMIT}")
    return limit


def _epoch_minute(moment: datetime, *, ceil: bool) -> int:
    seconds = moment.timestamp()
    return int(-(-seconds // 60)) if ceil else int(seconds // 60)


def encode_page_token(symbol: str, minute: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([symbol, minute]).encode()).decode()


def decode_page_token(token: str) -> tuple[str, int]:
    try:
        symbol, minute = json.loads(base64.urlsafe_b64decode(token.encode()))
        if isinstance(symbol, str) and isinstance(minute, int):
            return symbol, minute
    except (ValueError, binascii.Error, TypeError):
        pass
    raise ApiError(422, f"invalid page_token: {token!r}; pass the next_page_token of the previous page unchanged")


def _bar_dicts(bars: Bars) -> list[dict]:
    stamps = np.datetime_as_string(bars.t.astype("datetime64[m]"), unit="s")
    columns = [bars.o.tolist(), bars.h.tolist(), bars.l.tolist(), bars.c.tolist(), bars.v.tolist(), bars.n.tolist(), bars.vw.tolist()]
    return [
        {"t": f"{t}Z", "o": o, "h": h, "l": low, "c": c, "v": v, "n": n, "vw": vw}
        for t, o, h, low, c, v, n, vw in zip(stamps.tolist(), *columns)
    ]


class BarsQuery:
    """One bars request, validated: which symbols, timeframe, window, page and order."""

    def __init__(self, query: dict, known: set[str], *, crypto: bool):
        raw_symbols = _one(query, "symbols")
        if not raw_symbols:
            raise ApiError(422, "missing symbols: pass symbols=AAPL,MSFT")
        symbols = [s.strip() for s in raw_symbols.split(",")]
        if any(not s or len(s) > 32 for s in symbols):
            raise ApiError(422, f"invalid symbols: {raw_symbols[:200]!r}; use comma-separated symbols")
        raw_tf = _one(query, "timeframe")
        self.timeframe = canonical_timeframe(raw_tf or "")
        if self.timeframe is None:
            raise ApiError(422, f"invalid timeframe: {raw_tf!r}; use 1Min, 5Min, 15Min, 30Min, 1Hour or 1Day")
        now = datetime.now(timezone.utc)
        self.start = _parse_time(query, "start", now.replace(hour=0, minute=0, second=0, microsecond=0))
        self.end = _parse_time(query, "end", now)
        if self.end < self.start:
            raise ApiError(422, f"end {self.end.isoformat()} is before start {self.start.isoformat()}")
        self.limit = _parse_limit(query)
        self.descending = _one(query, "sort", "asc") == "desc"
        if _one(query, "sort", "asc") not in ("asc", "desc"):
            raise ApiError(422, "invalid sort: use asc or desc")
        if not crypto:
            if _one(query, "adjustment", "raw") not in ADJUSTMENTS:
                raise ApiError(422, f"invalid adjustment: use one of {sorted(ADJUSTMENTS)}")
            if _one(query, "feed", "sip") not in FEEDS:
                raise ApiError(422, f"invalid feed: use one of {sorted(FEEDS)}")
        token = _one(query, "page_token")
        self.resume = decode_page_token(token) if token else None
        self.symbols = sorted({s for s in symbols if s in known})
        self.crypto = crypto

    def page(self) -> dict:
        """One page: up to `limit` bars across all symbols, ordered by symbol then time."""
        out: dict[str, list] = {}
        remaining = self.limit
        first, last = _epoch_minute(self.start, ceil=True), _epoch_minute(self.end, ceil=False)
        symbols = self.symbols
        if self.resume:
            symbols = [s for s in symbols if s >= self.resume[0]]
        for symbol in symbols:
            lo, hi = first, last
            if self.resume and symbol == self.resume[0]:
                lo, hi = (lo, self.resume[1]) if self.descending else (self.resume[1], hi)
            for bars in self._bars(symbol, lo, hi):
                if remaining == 0:
                    return {"bars": out, "next_page_token": encode_page_token(symbol, int(bars.t[0]))}
                take = bars.select(slice(0, remaining))
                out.setdefault(symbol, []).extend(_bar_dicts(take))
                remaining -= len(take)
                if len(take) < len(bars):
                    return {"bars": out, "next_page_token": encode_page_token(symbol, int(bars.t[len(take)]))}
        return {"bars": out, "next_page_token": None}

    def _bars(self, symbol: str, lo: int, hi: int) -> Iterator[Bars]:
        generator = BarGenerator(symbol, crypto=self.crypto)
        if not self.descending:
            yield from generator.bars(self.timeframe, lo, hi)
            return
        chunks = list(generator.bars(self.timeframe, lo, hi))
        for bars in reversed(chunks):
            yield bars.select(slice(None, None, -1))


# --- routes --------------------------------------------------------------------------------------
def route_assets(state: SandboxState, query: dict) -> bytes:
    status, asset_class = _one(query, "status"), _one(query, "asset_class")
    exchange, attributes = _one(query, "exchange"), _one(query, "attributes")
    if status not in (None, "", "active", "inactive"):
        raise ApiError(422, f"invalid status: {status!r}; use active or inactive", 42210000)
    if asset_class not in (None, "") and asset_class not in ASSET_CLASSES:
        raise ApiError(422, f"invalid asset_class: {asset_class!r}; use one of {sorted(ASSET_CLASSES)}", 42210000)
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
        raise ApiError(404, f"asset not found for {symbol_or_id[:64]!r}", 40410000)
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


def route_calendar(query: dict) -> bytes:
    import pandas as pd

    days = xnys_days()
    start = _one(query, "start")
    end = _one(query, "end")
    try:
        lo = pd.Timestamp(start).date() if start else None
        hi = pd.Timestamp(end).date() if end else None
    except ValueError:
        raise ApiError(422, f"invalid start/end: {start!r}/{end!r}; use YYYY-MM-DD") from None
    opens = pd.to_datetime(days.open * 60, unit="s", utc=True).tz_convert("America/New_York")
    closes = pd.to_datetime(days.close * 60, unit="s", utc=True).tz_convert("America/New_York")
    out = []
    for o, c in zip(opens, closes):
        d = o.date()
        if (lo and d < lo) or (hi and d > hi):
            continue
        out.append({"date": d.isoformat(), "open": o.strftime("%H:%M"), "close": c.strftime("%H:%M"),
                    "session_open": "0400", "session_close": "2000", "settlement_date": d.isoformat()})
    return json.dumps(out).encode()


class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "SandboxServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
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
            self._hook(state, method, path, body)
            return
        headers: dict[str, str] = {}
        try:
            state.authenticate(self.headers.get("APCA-API-KEY-ID"), self.headers.get("APCA-API-SECRET-KEY"))
            headers = state.admit(self.headers["APCA-API-KEY-ID"], self._arrived)
            hang, fault_status, malformed, truncated = state.draw_fault(path)
            if hang and state.stop.wait(hang):
                return self._send(503, b'{"code":50300000,"message":"sandbox reset"}', headers, method, path)
            if fault_status:
                raise ApiError(fault_status, f"injected fault {fault_status}")
            payload = self._route(state, method, path, query)
            if malformed:
                payload = payload[: max(1, len(payload) // 2)]
            self._send(200, payload, headers, method, path, cut_at=len(payload) // 2 if truncated else None)
        except RateLimited as exc:
            self._send(429, json.dumps({"code": 42910000, "message": "too many requests."}).encode(), exc.headers, method, path)
        except ApiError as exc:
            self._send(exc.status, json.dumps(exc.body).encode(), headers, method, path)
        except Exception as exc:  # a sandbox bug must still answer in Alpaca's shape, never hang the client
            self._send(500, json.dumps({"code": 50000000, "message": f"internal error: {type(exc).__name__}"}).encode(), headers, method, path)

    def _route(self, state: SandboxState, method: str, path: str, query: dict) -> bytes:
        if method != "GET":
            raise ApiError(405, f"method {method} not allowed on {path}")
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
            page = BarsQuery(query, state.bar_symbols["crypto" if crypto else "us_equity"], crypto=crypto).page()
            for symbol in state.faults.invalid_bar_symbols:
                if page["bars"].get(symbol):
                    page["bars"][symbol][0]["l"] = -1.0
            return json.dumps(page).encode()
        raise ApiError(404, f"no such endpoint: {path}", 40410000)

    def _hook(self, state: SandboxState, method: str, path: str, body: bytes) -> None:
        try:
            if (method, path) == ("GET", "/_sandbox/stats"):
                with state.lock:
                    payload = json.dumps({"requests": list(state.requests)}).encode()
            elif (method, path) == ("PUT", "/_sandbox/universe"):
                universe = _json_body(body)
                if not isinstance(universe, list) or not all(isinstance(a, dict) for a in universe):
                    raise ApiError(422, "universe must be a JSON array of asset objects in the /v2/assets shape")
                state.set_universe(universe)
                payload = json.dumps({"assets": len(universe)}).encode()
            elif (method, path) == ("POST", "/_sandbox/faults"):
                faults = Faults.parse(_json_body(body))
                with state.lock:
                    state.faults = faults
                payload = json.dumps(faults.__dict__).encode()
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
