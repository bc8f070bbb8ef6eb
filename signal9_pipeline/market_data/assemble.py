"""Putting stored blocks together into the frame a read returns: one pass over the arrays of every company.

A read fetches each company's items and decodes each into a `Block` of plain arrays. `assemble` concatenates all
of them once, cuts them to the window (and the session), sorts them by (company, time) and keeps each bar once,
then lays the companies out in the order they were asked. No frame is built per company: a cross-section of
thousands of companies costs one sort and one frame, not thousands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from signal9_pipeline.market_data.days import REGULAR, session_codes

COLUMNS = ["timestamp", "open", "high", "low", "close", "volume", "trade_count", "vwap"]
VALUES = COLUMNS[1:]


@dataclass(frozen=True)
class Block:
    """One item's bars as plain arrays, as a read sees them (withdrawn bars left out, or rebuilt as known at a
    moment)."""

    seconds: np.ndarray  # epoch seconds, ascending
    columns: dict[str, np.ndarray]  # VALUES
    bucketed: bool  # a bucket item (versioned): it wins over an item of the symbol-day layout holding the same bar
    crypto: bool


@dataclass(frozen=True)
class Bars:
    """Assembled bars of one or more companies: one array per column, the companies in the order asked, each one's
    bars in time order, with each company's row range (`spans`: label, Alpaca id, first row, end row)."""

    labels: np.ndarray  # object: each row's label
    nanoseconds: np.ndarray
    columns: dict[str, np.ndarray]
    spans: list[tuple[str, str, int, int]]
    equity: frozenset[str]  # the companies with any equity item (crypto is never adjusted)

    def frame(self, *, with_symbol: bool) -> pd.DataFrame:
        """The read's frame: COLUMNS, with the `symbol` (label) column first for a read of many companies."""
        if not len(self.nanoseconds):
            columns = empty_columns()
            return pd.DataFrame({"symbol": pd.Series(dtype=object), **columns} if with_symbol else columns)
        symbol = {"symbol": self.labels} if with_symbol else {}
        return pd.DataFrame({**symbol, "timestamp": pd.to_datetime(self.nanoseconds, utc=True),
                             **{c: self.columns[c] for c in VALUES}})

    def with_columns(self, columns: dict[str, np.ndarray]) -> Bars:
        return Bars(self.labels, self.nanoseconds, columns, self.spans, self.equity)


def empty_columns() -> dict[str, pd.Series]:
    return {c: pd.Series(dtype="datetime64[ns, UTC]" if c == "timestamp" else "float64") for c in COLUMNS}


def assemble(companies: list[tuple[str, str]], blocks: dict[str, list[Block]], timeframe: str, start: pd.Timestamp,
             end: pd.Timestamp, session: str = "all") -> Bars:
    """The bars with start <= timestamp <= end of each (label, Alpaca id), from each company's blocks in bucket
    order, in the session ("all", "regular" or "extended"; equities only). Of bars of one company and time, a
    bucket's is kept over a symbol-day item's, and of equals the later block's."""
    ids = list(dict.fromkeys(i for _, i in companies))
    if session != "all":
        for label, alpaca_id in companies:
            if any(b.crypto for b in blocks.get(alpaca_id, [])):
                raise ValueError(f"session={session!r} applies to equities; {label} is crypto and trades around "
                                 "the clock")
    parts = [(code, b) for code, i in enumerate(ids) for b in blocks.get(i, [])]
    counts = [len(b.seconds) for _, b in parts]
    code = np.repeat(np.array([c for c, _ in parts], dtype=np.int64), counts)
    bucketed = np.repeat(np.array([b.bucketed for _, b in parts], dtype=bool), counts)
    seconds = np.concatenate([b.seconds for _, b in parts]).astype(np.int64) if parts else np.zeros(0, np.int64)
    rows = _kept(code, bucketed, seconds * 1_000_000_000, timeframe, start, end, session)
    rows, spans, labels = _in_order_asked(companies, ids, code[rows], rows)
    columns = {c: np.concatenate([b.columns[c] for _, b in parts])[rows] if parts else np.zeros(0) for c in VALUES}
    equity = frozenset(i for i in ids if any(not b.crypto for b in blocks.get(i, [])))
    return Bars(labels, seconds[rows] * 1_000_000_000, columns, spans, equity)


def _kept(code: np.ndarray, bucketed: np.ndarray, nanoseconds: np.ndarray, timeframe: str, start: pd.Timestamp,
          end: pd.Timestamp, session: str) -> np.ndarray:
    """The rows inside the window and session, sorted by (company, time), one per company and time."""
    inside = (nanoseconds >= start.value) & (nanoseconds <= end.value)
    if session != "all":
        regular = session_codes(pd.Series(nanoseconds), timeframe) == REGULAR
        inside &= regular if session == "regular" else ~regular
    rows = np.flatnonzero(inside)
    # A stable sort: of the bars of one company and time, a bucket's sorts last, and the last is kept.
    rows = rows[np.lexsort((bucketed[rows], nanoseconds[rows], code[rows]))]
    if len(rows) > 1:
        last = np.ones(len(rows), dtype=bool)
        last[:-1] = (nanoseconds[rows[1:]] != nanoseconds[rows[:-1]]) | (code[rows[1:]] != code[rows[:-1]])
        rows = rows[last]
    return rows


def _in_order_asked(companies: list[tuple[str, str]], ids: list[str], codes: np.ndarray, rows: np.ndarray
                    ) -> tuple[np.ndarray, list[tuple[str, str, int, int]], np.ndarray]:
    """Rows sorted by company code, laid out in the order the companies were asked (a company asked under two
    labels comes twice), with each one's row span and each row's label."""
    starts = np.searchsorted(codes, np.arange(len(ids)), side="left")
    ends = np.searchsorted(codes, np.arange(len(ids)), side="right")
    code_of = {i: n for n, i in enumerate(ids)}
    spans, pieces, position = [], [], 0
    for label, alpaca_id in companies:
        n = code_of[alpaca_id]
        spans.append((label, alpaca_id, position, position + int(ends[n] - starts[n])))
        pieces.append(rows[starts[n]:ends[n]])
        position = spans[-1][3]
    # Each company asked once: the rows, in code order, are in the order asked already.
    laid = rows if len(companies) == len(ids) or not pieces else np.concatenate(pieces)
    labels = np.empty(position, dtype=object)
    for label, _, first, stop in spans:
        labels[first:stop] = label
    return laid, spans, labels
