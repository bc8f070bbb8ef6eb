"""Restatements: what a re-fetch changed in the bars stored before, kept so that any earlier read can be rebuilt.

Alpaca revises recent days after the fact: late-reported trades add volume to a session's bars for days after it
(recorded daily bars of the same days, fetched the evening of the session and much later, differ by +0.06% to
+1.6% in volume, prices equal), and minute bars go missing, come back and go missing again (alpacahq/Alpaca-API
issue 209, alpaca-trade-api-python issue 803). Every write of a bucket compares the days it fetched with what is
stored, before the merge (`merge`):
- restated: a stored bar answered again with other values (old -> new, field by field);
- added late: a bar at a time of a day stored before without one;
- withdrawn: a stored bar the answer no longer has - kept in the bucket and flagged (`withdrawn`), never deleted;
- restored: a withdrawn bar answered again (its flag removed);
- refused: a bar answered again but impossible (held back): the stored bar stays, the refusal is recorded.
A day fetched for the first time is no revision; the bucket records when each day was first stored (`days_stored`).
The changes of a write are ledger entries (`tables.market_data`), written before the bucket (write-ahead), which
lists them; `as_known_at` rebuilds a bucket as it was stored at any moment by undoing what came later. Pure logic.
"""

from __future__ import annotations

import collections
import dataclasses
import gzip
import hashlib
from dataclasses import dataclass, field

import isal.isal_zlib as isal_zlib
import numpy as np
import pandas as pd
import pyarrow as pa
from pyarrow import ipc

from signal9_pipeline.timestamps import utc_stamp

VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "vwap", "trade_count")
PRICE_COLUMNS = ("open", "high", "low", "close")
# Late trades move a bar's volume, trades and, with them, its vwap; they do not move its prices.
RESTATED, ADDED_LATE, WITHDRAWN, RESTORED, REFUSED = 1, 2, 3, 4, 5
CHANGE_NAMES = {RESTATED: "restated", ADDED_LATE: "added_late", WITHDRAWN: "withdrawn", RESTORED: "restored",
                REFUSED: "refused"}
VOLUME_TOLERANCE = 0.05  # a volume (or vwap) revision above 5% is worth a look; any price revision is
_SCHEMA = pa.schema([pa.field("timestamp", pa.timestamp("s", tz="UTC"), nullable=False),
                     pa.field("change", pa.int8(), nullable=False),
                     *(pa.field(f"old_{c}", pa.float64()) for c in VALUE_COLUMNS),
                     *(pa.field(f"new_{c}", pa.float64()) for c in VALUE_COLUMNS)],
                    metadata={b"signal9.ledger.format": b"1"})


class LedgerError(LookupError):
    """A read `known_at` that cannot be rebuilt: a ledger entry is missing or corrupt, or the moment lies before the
    bucket's ledger began. Never answered with the latest values instead."""


@dataclass
class Bucket:
    """A bucket's bars as stored: times (epoch seconds, sorted), values, and what the ledger needs of the item."""

    seconds: np.ndarray
    columns: dict[str, np.ndarray]
    days: np.ndarray  # the trading day of each bar
    withdrawn: dict[int, str] = field(default_factory=dict)  # epoch second -> when it was withdrawn
    days_stored: dict[str, str] = field(default_factory=dict)  # day -> when it was first stored
    ledger_from: str | None = None  # when the first write that kept a ledger happened (older days: unknown)


@dataclass
class Fetch:
    """What one fetch brings to a bucket: its sound bars, the days it answered, its held-back bars."""

    seconds: np.ndarray
    columns: dict[str, np.ndarray]
    days: set[str]
    held: list[dict]  # {"day", "t", "field", "reason"}
    bar_days: np.ndarray  # the trading day of each fetched bar


@dataclass
class Merged:
    bucket: Bucket
    changes: pd.DataFrame  # one row per changed bar: timestamp, day, change, old_*, new_* (empty: nothing revised)
    first_days: list[str]  # days stored for the first time
    kept_at_held: int  # stored bars kept at the times of bars held back now

    @property
    def unchanged(self) -> bool:
        return self.changes.empty and not self.first_days


def merge(stored: Bucket, fetch: Fetch, now: str) -> Merged:
    """The bucket with this fetch's days answered again, and what that changed.

    Bars of days the fetch did not answer stay as they are. Of a fetched day: answered bars replace the stored
    ones (restated where their values differ; added late where the day was stored before), stored bars the fetch
    lacks are kept and flagged withdrawn, stored bars at the times of held-back bars are kept (refused).
    """
    fetched = np.isin(stored.days, list(fetch.days))
    held_seconds = {int(pd.Timestamp(h["t"]).timestamp()): h["reason"] for h in fetch.held}
    answered = np.isin(stored.seconds, fetch.seconds)
    at_held = fetched & ~answered & np.isin(stored.seconds, list(held_seconds))
    withdrawn_now = fetched & ~answered & ~at_held
    keep = ~fetched | at_held | withdrawn_now
    seconds = np.concatenate([stored.seconds[keep], fetch.seconds])
    order = np.argsort(seconds, kind="stable")
    columns = {c: np.concatenate([stored.columns[c][keep], fetch.columns[c]])[order] for c in VALUE_COLUMNS}
    days = np.concatenate([stored.days[keep], fetch.bar_days])[order]
    stored_days = set(stored.days.tolist()) | set(stored.days_stored)
    first_days = sorted(d for d in fetch.days if d not in stored_days)
    rows = _rows(stored, fetch, fetched & answered, at_held, withdrawn_now, held_seconds, stored_days)
    withdrawn = {s: w for s, w in stored.withdrawn.items() if s not in set(fetch.seconds.tolist())}
    withdrawn.update({int(s): now for s in stored.seconds[withdrawn_now] if int(s) not in stored.withdrawn})
    days_stored = {**stored.days_stored, **{d: now for d in first_days}}
    bucket = Bucket(seconds[order], columns, days, withdrawn, days_stored, stored.ledger_from or now)
    return Merged(bucket, rows, first_days, int(at_held.sum()))


def _rows(stored: Bucket, fetch: Fetch, answered: np.ndarray, at_held: np.ndarray, withdrawn_now: np.ndarray,
          held: dict[int, str], stored_days: set[str]) -> pd.DataFrame:
    parts = []
    idx = np.flatnonzero(answered)
    if len(idx):
        j = np.searchsorted(fetch.seconds, stored.seconds[idx])  # the fetched bars are sorted by time
        differs = np.zeros(len(idx), dtype=bool)
        for c in VALUE_COLUMNS:
            a, b = stored.columns[c][idx].astype(float), fetch.columns[c][j].astype(float)
            differs |= ~((a == b) | (np.isnan(a) & np.isnan(b)))
        was_withdrawn = np.isin(stored.seconds[idx], list(stored.withdrawn))
        pick = differs | was_withdrawn
        change = np.where(was_withdrawn[pick], RESTORED, RESTATED)
        parts.append(_frame(stored.seconds[idx][pick], stored.days[idx][pick], change,
                            {c: stored.columns[c][idx][pick] for c in VALUE_COLUMNS},
                            {c: fetch.columns[c][j][pick] for c in VALUE_COLUMNS}))
    late = ~np.isin(fetch.seconds, stored.seconds) & np.isin(fetch.bar_days, list(stored_days))
    if late.any():
        parts.append(_frame(fetch.seconds[late], fetch.bar_days[late], np.full(int(late.sum()), ADDED_LATE), None,
                            {c: fetch.columns[c][late] for c in VALUE_COLUMNS}))
    newly = withdrawn_now & ~np.isin(stored.seconds, list(stored.withdrawn))
    for mask, kind in ((newly, WITHDRAWN), (at_held, REFUSED)):
        if mask.any():
            parts.append(_frame(stored.seconds[mask], stored.days[mask], np.full(int(mask.sum()), kind),
                                {c: stored.columns[c][mask] for c in VALUE_COLUMNS}, None))
    if not parts:
        return _frame(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object), np.zeros(0, dtype=np.int8), None, None)
    return (pd.concat(parts, ignore_index=True).sort_values(["timestamp", "change"], kind="stable")
            .reset_index(drop=True))


def _frame(seconds: np.ndarray, days: np.ndarray, change: np.ndarray, old: dict | None,
           new: dict | None) -> pd.DataFrame:
    nan = np.full(len(seconds), np.nan)
    return pd.DataFrame({"timestamp": np.asarray(seconds, dtype=np.int64), "day": np.asarray(days, dtype=object),
                         "change": np.asarray(change, dtype=np.int8),
                         **{f"old_{c}": (old[c].astype(float) if old else nan) for c in VALUE_COLUMNS},
                         **{f"new_{c}": (new[c].astype(float) if new else nan) for c in VALUE_COLUMNS}})


# --- figures of a write ---------------------------------------------------------------------------
def relative_changes(changes: pd.DataFrame) -> np.ndarray:
    """Per restated bar, its largest relative change over the fields (|new - old| / |old|)."""
    restated = changes.loc[changes["change"] == RESTATED]
    worst = np.zeros(len(restated))
    for c in VALUE_COLUMNS:
        old, new = restated[f"old_{c}"].to_numpy(), restated[f"new_{c}"].to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(old == new, 0.0, np.abs(new - old) / np.abs(old))
        worst = np.fmax(worst, np.nan_to_num(relative, nan=0.0, posinf=np.inf))
    return worst


def beyond_tolerance(changes: pd.DataFrame) -> pd.DataFrame:
    """Restated bars a person should look at: any price changed, or the volume or vwap by more than VOLUME_TOLERANCE."""
    restated = changes.loc[changes["change"] == RESTATED]
    price = np.zeros(len(restated), dtype=bool)
    for c in PRICE_COLUMNS:
        old, new = restated[f"old_{c}"].to_numpy(), restated[f"new_{c}"].to_numpy()
        price |= ~((old == new) | (np.isnan(old) & np.isnan(new)))
    for c in ("volume", "vwap"):
        old, new = restated[f"old_{c}"].to_numpy(), restated[f"new_{c}"].to_numpy()
        with np.errstate(invalid="ignore"):
            price |= np.abs(new - old) > VOLUME_TOLERANCE * np.abs(old)
    return restated.loc[price]


@dataclass(frozen=True)
class Revision:
    """What one write of a bucket changed, as a run reports it (the entry itself holds every old -> new value)."""

    series: str
    alpaca_id: str
    symbol: str
    timeframe: str
    ledger_key: str
    seen_at: str
    by_day: dict[str, collections.Counter]  # day -> change name -> bars
    largest: dict[str, float]  # day -> the largest relative change of a restated bar
    beyond: list[str]  # restated bars beyond tolerance, described (at most MAX_DESCRIBED)
    beyond_count: int

    @property
    def days(self) -> list[str]:
        return sorted(self.by_day)

    def counts(self) -> dict[str, int]:
        total: collections.Counter = collections.Counter()
        for counts in self.by_day.values():
            total.update(counts)
        return {f"bars_{name}": int(total[name]) for name in CHANGE_NAMES.values()}

    def without_names(self) -> Revision:
        """The same without its descriptions: what a run keeps of each revision to announce it."""
        return dataclasses.replace(self, beyond=[], largest={})


MAX_DESCRIBED = 20


def summarize(changes: pd.DataFrame, series: str, alpaca_id: str, symbol: str, timeframe: str, ledger_key: str,
              seen_at: str) -> Revision:
    by_day: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for day, change in zip(changes["day"].tolist(), changes["change"].tolist()):
        by_day[str(day)][CHANGE_NAMES[int(change)]] += 1
    restated = changes.loc[changes["change"] == RESTATED]
    largest: dict[str, float] = {}
    for day, value in zip(restated["day"].tolist(), relative_changes(changes).tolist()):
        largest[str(day)] = max(largest.get(str(day), 0.0), float(value))
    beyond = beyond_tolerance(changes)
    return Revision(series, alpaca_id, symbol, timeframe, ledger_key, seen_at, dict(by_day), largest,
                    [f"{timeframe} {describe(row, symbol)}"
                     for row in beyond.head(MAX_DESCRIBED).itertuples(index=False)],
                    len(beyond))


def describe(row, symbol: str) -> str:
    """One ledger row as a person reads it: symbol, time, change, the fields old -> new."""
    fields = [f"{c} {getattr(row, 'old_' + c):g} -> {getattr(row, 'new_' + c):g}" for c in VALUE_COLUMNS
              if not _same(getattr(row, "old_" + c), getattr(row, "new_" + c))]
    return (f"{symbol} {utc_stamp(int(row.timestamp))} {CHANGE_NAMES[int(row.change)]}"
            + (f": {', '.join(fields)}" if fields else ""))


def _same(a: float, b: float) -> bool:
    return a == b or (np.isnan(a) and np.isnan(b))


# --- the stored form of a ledger entry's changes -------------------------------------------------
def encode_changes(changes: pd.DataFrame) -> tuple[bytes, str]:
    """(block, checksum): the changes as a gzipped Arrow IPC stream, like a bars block."""
    arrays = [pa.array(changes["timestamp"].to_numpy(dtype=np.int64)).view(pa.timestamp("s", tz="UTC")),
              pa.array(changes["change"].to_numpy(dtype=np.int8))]
    arrays += [pa.array(changes[f"{side}_{c}"].to_numpy(dtype=np.float64))
               for side in ("old", "new") for c in VALUE_COLUMNS]
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, _SCHEMA) as writer:
        writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=_SCHEMA))
    block = isal_zlib.compress(sink.getvalue().to_pybytes(), 1, wbits=31)
    return block, hashlib.sha256(block).hexdigest()[:32]


def decode_changes(block: bytes, checksum: str) -> pd.DataFrame:
    """The changes of a ledger entry; LedgerError if the block does not match its checksum or cannot be read."""
    block = bytes(block)
    if hashlib.sha256(block).hexdigest()[:32] != checksum:
        raise LedgerError("fails its checksum")
    try:
        table = ipc.open_stream(gzip.decompress(block)).read_all()
    except (OSError, EOFError, pa.ArrowInvalid) as exc:
        raise LedgerError(f"cannot be read: {exc}") from None
    frame = table.to_pandas()
    frame["timestamp"] = table.column("timestamp").cast(pa.int64()).to_numpy()
    return frame


# --- reading as of a moment -------------------------------------------------------------------------
def as_known_at(bucket: Bucket, revisions: list[tuple[str, pd.DataFrame]], known_at: str) -> Bucket:
    """The bucket as stored at `known_at` (ISO 8601 UTC): the revisions seen after it undone, latest first, and
    the days first stored after it left out. `revisions` are (seen_at, changes) in the order they were written."""
    unknown = sorted({str(d) for d in bucket.days if d not in bucket.days_stored})
    if unknown and bucket.ledger_from and known_at < bucket.ledger_from:
        raise LedgerError(f"days {', '.join(unknown[:3])} were stored before this bucket's ledger began at "
                          f"{bucket.ledger_from}; reads known at an earlier moment cannot be rebuilt")
    values = {int(s): [bucket.columns[c][i] for c in VALUE_COLUMNS] for i, s in enumerate(bucket.seconds)}
    withdrawn = dict(bucket.withdrawn)
    for seen_at, changes in reversed(revisions):
        if seen_at <= known_at:
            break
        for row in changes.itertuples(index=False):
            # pandas-stubs types a row's every field as any scalar; these two columns are int64 and int8
            t, change = int(row.timestamp), int(row.change)  # type: ignore[arg-type]
            old = [getattr(row, f"old_{c}") for c in VALUE_COLUMNS]
            if change in (RESTATED, RESTORED):
                values[t] = old
            if change == ADDED_LATE:
                values.pop(t, None)
            if change == WITHDRAWN:
                withdrawn.pop(t, None)
            if change == RESTORED:
                withdrawn[t] = seen_at
    day_of = dict(zip(bucket.seconds.tolist(), bucket.days.tolist()))
    kept = sorted(t for t in values if t not in withdrawn and bucket.days_stored.get(day_of.get(t, ""), "") <= known_at)
    columns = {c: np.array([values[t][i] for t in kept], dtype=np.float64) for i, c in enumerate(VALUE_COLUMNS)}
    columns["trade_count"] = columns["trade_count"].astype(np.int64)
    return Bucket(np.array(kept, dtype=np.int64), columns, np.array([day_of[t] for t in kept], dtype=object), {},
                  bucket.days_stored, bucket.ledger_from)
