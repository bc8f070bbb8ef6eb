"""A loopback server that answers Alpaca's bars and corporate-actions endpoints with recorded real bodies.

The bar objects it sends are the recorded ones, unchanged JSON values. Only the
page envelope is rebuilt, the way Alpaca pages a multi-symbol request (`bars`
keyed by symbol, symbols in order then time, `limit` counted across symbols,
`next_page_token`), so the pipeline's own requests - its windows, symbol groups
and page tokens - get exactly the recorded bars that fall inside them. It
records every request it served, so tests can check what the pipeline sent.
Bars are kept per `adjustment` (Alpaca's raw and adjusted answers differ);
corporate-actions pages are served in order, whatever the filters, each
pointing to the next with its own `next_page_token`.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd

PATHS = {"stock_bars": "/v2/stocks/bars", "crypto_bars": "/v1beta3/crypto/us/bars"}
ACTIONS_PATH = "/v1/corporate-actions"


class ReplayServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bars: dict[tuple[str, str, str, str], list[dict]] = {}  # (path, timeframe, symbol, adjustment) -> bars
        self.action_pages: list[dict] = []
        self.served: list[tuple[str, dict[str, str]]] = []
        self.failure: tuple[int, bytes] | None = None  # answer every request with this status and body
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, name="alpaca-replay", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def load(self, path: str, timeframe: str, bars_by_symbol: dict[str, list[dict]], adjustment: str = "raw") -> None:
        """Serve these recorded bars (replacing what was served before for the same symbols and adjustment)."""
        with self.lock:
            for symbol, bars in bars_by_symbol.items():
                self.bars[(path, timeframe, symbol, adjustment)] = sorted(bars, key=lambda b: pd.Timestamp(b["t"]))

    def load_actions(self, pages: list[dict]) -> None:
        """Serve these corporate-actions bodies as consecutive pages."""
        with self.lock:
            self.action_pages = [dict(p) for p in pages]

    def clear(self) -> None:
        with self.lock:
            self.bars.clear()
            self.action_pages = []
            self.served.clear()
            self.failure = None

    def fail_with(self, status: int, body: bytes) -> None:
        """Answer every request with a recorded error: its status and its body, byte for byte."""
        with self.lock:
            self.failure = (status, body)

    def page(self, path: str, query: dict[str, str]) -> dict:
        symbols = sorted(s for s in query.get("symbols", "").split(",") if s)
        start, end = pd.Timestamp(query["start"]), pd.Timestamp(query["end"])
        limit = int(query.get("limit", 1000))
        resume = _decode(query["page_token"]) if query.get("page_token") else None
        out: dict[str, list[dict]] = {}
        taken = 0
        for symbol in symbols:
            if resume and symbol < resume[0]:
                continue
            recorded = self.bars.get((path, query["timeframe"], symbol, query.get("adjustment", "raw")), [])
            inside = [b for b in recorded if start <= pd.Timestamp(b["t"]) <= end]
            first = resume[1] if resume and symbol == resume[0] else 0
            for index in range(first, len(inside)):
                if taken == limit:
                    return {"bars": out, "next_page_token": _encode(symbol, index)}
                out.setdefault(symbol, []).append(inside[index])
                taken += 1
        return {"bars": out, "next_page_token": None}


    def actions_page(self, token: str | None) -> dict:
        index = int(token[1:]) if token else 0
        if not self.action_pages:
            return {"corporate_actions": {}, "next_page_token": None}
        more = index + 1 < len(self.action_pages)
        return {**self.action_pages[index], "next_page_token": f"p{index + 1}" if more else None}


class _Handler(BaseHTTPRequestHandler):
    server: ReplayServer

    def log_message(self, format, *args) -> None:  # the base class's name
        return

    def do_GET(self) -> None:  # http.server's name
        parsed = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}
        with self.server.lock:
            self.server.served.append((parsed.path, query))
            if self.server.failure:
                status, payload = self.server.failure
            elif parsed.path in PATHS.values():
                status, payload = 200, json.dumps(self.server.page(parsed.path, query)).encode()
            elif parsed.path == ACTIONS_PATH:
                status, payload = 200, json.dumps(self.server.actions_page(query.get("page_token"))).encode()
            else:
                status, payload = 404, b'{"message": "Not Found"}'

        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _encode(symbol: str, index: int) -> str:
    return base64.urlsafe_b64encode(f"{symbol}|{index}".encode()).decode()


def _decode(token: str) -> tuple[str, int]:
    symbol, index = base64.urlsafe_b64decode(token.encode()).decode().rsplit("|", 1)
    return symbol, int(index)
