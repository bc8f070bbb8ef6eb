"""The contract corpus: real Alpaca responses recorded by others, with their provenance (corpus/README.md).

`corpus/index.json` lists each recorded body with the request that produced it
(as far as its source says), its status and its source. Bodies are verbatim
unless an entry says how it was converted from printed output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).parent / "corpus"
BARS_KINDS = ("stock_bars", "crypto_bars")
ACTIONS_KIND = "corporate_actions"


@dataclass(frozen=True)
class Entry:
    name: str
    file: str
    kind: str
    status: int | None  # None where the source does not show it
    host: str | None  # "data", "trading" or "broker"
    request: dict | None
    shape: str | None
    source: dict
    verbatim: bool
    notes: str
    recorded_timeframe: str | None

    @property
    def path(self) -> str:
        return (self.request or {}).get("path") or ""

    @property
    def body(self) -> Any:
        return json.loads((CORPUS / self.file).read_text())

    @property
    def params(self) -> dict:
        return dict((self.request or {}).get("params") or {})

    @property
    def timeframe(self) -> str:
        return canonical_timeframe(self.recorded_timeframe)

    @property
    def replayable(self) -> bool:
        """A bars page of the endpoints the pipeline uses (v2 stocks; crypto v1beta3, or v1beta2 of the same shape)."""
        current = self.path.startswith("/v2/stocks/") or self.path.startswith(("/v1beta3/crypto/us/", "/v1beta2/crypto/"))
        return (self.kind in BARS_KINDS and self.status == 200 and current and "latest" not in self.path
                and self.recorded_timeframe in _ALIASES and bool(self.bars_by_symbol()))

    def bars_by_symbol(self) -> dict[str, list[dict]]:
        """The recorded bars by symbol, whether the body is the multi-symbol shape or the single-symbol one."""
        body = self.body
        if isinstance(body.get("bars"), list):  # the single-symbol endpoint: /v2/stocks/{symbol}/bars
            return {body.get("symbol") or self.params["symbols"]: body["bars"]}
        if body.get("bars") is None:
            return {}
        return {symbol: bars for symbol, bars in (body.get("bars") or {}).items() if bars}


def actions_by_type(entry: Entry) -> dict[str, list[dict]]:
    """A corporate-actions recording's entries by body key (`forward_splits`, `cash_dividends`, ...)."""
    return dict(entry.body["corporate_actions"])


@lru_cache(maxsize=1)
def entries() -> tuple[Entry, ...]:
    raw = json.loads((CORPUS / "index.json").read_text())
    return tuple(Entry(name=e["name"], file=e["file"], kind=e["kind"], status=e.get("status"), host=e.get("host"),
                       request=e.get("request"), shape=e.get("shape"), source=e.get("source") or {},
                       verbatim=bool(e.get("verbatim", True)), notes=e.get("notes") or "",
                       recorded_timeframe=e.get("timeframe")) for e in raw)


def of_kind(*kinds: str) -> list[Entry]:
    return [e for e in entries() if e.kind in kinds]


def entry(name: str) -> Entry:
    return next(e for e in entries() if e.name == name)


_ALIASES = {"1T": "1Min", "5T": "5Min", "15T": "15Min", "30T": "30Min", "1H": "1Hour", "60Min": "1Hour", "1D": "1Day",
            "1Min": "1Min", "5Min": "5Min", "15Min": "15Min", "30Min": "30Min", "1Hour": "1Hour", "1Day": "1Day"}


def canonical_timeframe(value: str) -> str:
    return _ALIASES[value]
