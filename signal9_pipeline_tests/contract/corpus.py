"""The contract corpus: real Alpaca responses recorded by others, with their provenance (corpus/README.md).

`corpus/index.json` lists each recorded body with the request that produced it
(as far as its source says), its status and its source. Bodies are verbatim
unless an entry says how it was converted from printed output; a recording kept
as the source's own CSV (a pandas dump of alpaca-py's bars) is turned back into
Alpaca's JSON here, by `bars_from_dataframe_csv`, so the bytes on disk stay the
source's.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).parent / "corpus"
BARS_KINDS = ("stock_bars", "crypto_bars")
# Alpaca's latest bar is the latest minute bar ("Get the latest minute bar for one or more stocks", alpacahq's
# alpaca-mcp-server get_stock_latest_bar), so each is a 1Min bar of the historical endpoint, replayed in its envelope.
LATEST_KINDS = ("stock_latest_bar", "stock_latest_bars", "crypto_latest_bars")
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
    conversion: str
    notes: str
    recorded_timeframe: str | None

    @property
    def path(self) -> str:
        return (self.request or {}).get("path") or ""

    @property
    def body(self) -> Any:
        text = (CORPUS / self.file).read_text()
        return bars_from_dataframe_csv(text) if self.file.endswith(".csv") else json.loads(text)

    @property
    def crypto(self) -> bool:
        return self.kind.startswith("crypto")

    @property
    def params(self) -> dict:
        return dict((self.request or {}).get("params") or {})

    @property
    def timeframe(self) -> str:
        return "1Min" if self.kind in LATEST_KINDS else canonical_timeframe(self.recorded_timeframe)

    @property
    def replayable(self) -> bool:
        """Bars of the endpoints the pipeline uses (v2 stocks; crypto v1beta3, or v1beta2 of the same shape), in a
        timeframe it stores; latest bars too (minute bars). Left out: the legacy v1beta1 crypto bodies, whose
        per-exchange bars and unslashed symbols the current endpoint no longer serves, and timeframes like 2Hour."""
        current = (self.path.startswith("/v2/stocks/")
                   or self.path.startswith(("/v1beta3/crypto/us/", "/v1beta2/crypto/")))
        bars = self.kind in LATEST_KINDS or (self.kind in BARS_KINDS and self.recorded_timeframe in _ALIASES)
        return bars and self.status == 200 and current and bool(self.bars_by_symbol())

    def bars_by_symbol(self) -> dict[str, list[dict]]:
        """The recorded bars by symbol, whether the body is the multi-symbol shape or the single-symbol one (of
        historical bars: lists; of latest bars: one bar object)."""
        body = self.body
        if "bar" in body:  # the single-symbol latest bar: /v2/stocks/{symbol}/bars/latest
            return {body["symbol"]: [body["bar"]]}
        if isinstance(body.get("bars"), list):  # the single-symbol endpoint: /v2/stocks/{symbol}/bars
            return {body.get("symbol") or self.params["symbols"]: body["bars"]}
        if body.get("bars") is None:
            return {}
        return {symbol: [bars] if isinstance(bars, dict) else bars
                for symbol, bars in (body.get("bars") or {}).items() if bars}


def bars_from_dataframe_csv(text: str) -> dict:
    """alpaca-py's `BarSet.df` written by pandas' to_csv, back as Alpaca's multi-symbol bars body.

    Prices and vwap keep their printed digits; volume and trade count, which the
    DataFrame holds as floats ("2488.0"), become the integers Alpaca sends for stocks.
    """
    bars: dict[str, list[dict]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        stamp = row["timestamp"]
        if not stamp.endswith("+00:00"):
            raise ValueError(f"bars CSV row of {row['symbol']} has a time not in UTC: {stamp!r}")
        bars.setdefault(row["symbol"], []).append({
            "t": stamp[:-6].replace(" ", "T") + "Z",
            **{key: json.loads(row[column])
               for key, column in (("o", "open"), ("h", "high"), ("l", "low"), ("c", "close"))},
            "v": _whole(row["volume"]), "n": _whole(row["trade_count"]), "vw": json.loads(row["vwap"])})
    return {"bars": bars, "next_page_token": None}


def _whole(printed: str) -> int:
    value = float(printed)
    if not value.is_integer():
        raise ValueError(f"bars CSV holds a fractional count {printed!r} where Alpaca sends an integer")
    return int(value)


def actions_by_type(entry: Entry) -> dict[str, list[dict]]:
    """A corporate-actions recording's entries by body key (`forward_splits`, `cash_dividends`, ...)."""
    return dict(entry.body["corporate_actions"])


@lru_cache(maxsize=1)
def entries() -> tuple[Entry, ...]:
    raw = json.loads((CORPUS / "index.json").read_text())
    return tuple(Entry(name=e["name"], file=e["file"], kind=e["kind"], status=e.get("status"), host=e.get("host"),
                       request=e.get("request"), shape=e.get("shape"), source=e.get("source") or {},
                       verbatim=bool(e.get("verbatim", True)), conversion=e.get("conversion") or "",
                       notes=e.get("notes") or "",
                       recorded_timeframe=e.get("timeframe")) for e in raw)


def of_kind(*kinds: str) -> list[Entry]:
    return [e for e in entries() if e.kind in kinds]


def entry(name: str) -> Entry:
    return next(e for e in entries() if e.name == name)


_ALIASES = {"1T": "1Min", "5T": "5Min", "15T": "15Min", "30T": "30Min", "1H": "1Hour", "60Min": "1Hour", "1D": "1Day",
            "1Min": "1Min", "5Min": "5Min", "15Min": "15Min", "30Min": "30Min", "1Hour": "1Hour", "1Day": "1Day"}


def canonical_timeframe(value: str) -> str:
    return _ALIASES[value]
