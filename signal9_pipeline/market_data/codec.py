"""The compact encoding of one symbol-day of bars in one DynamoDB item.

Columns, not rows: timestamps as int32 seconds from the first bar (delta from
the day's first timestamp), prices and volumes as float64, trade counts as
int64, concatenated and zlib-compressed. A full crypto day of 1Min bars (1,440
bars) takes about 30 KB, far under DynamoDB's 400 KB item limit. The checksum is
over the uncompressed columns, so a read-back can prove the stored bars equal
what was fetched.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

import numpy as np
import pandas as pd

VERSION = 1
FLOAT_COLUMNS = ("open", "high", "low", "close", "volume", "vwap")
HEADER = struct.Struct("<BIq")  # version, bar count, first timestamp (epoch seconds)
MAX_ITEM_BYTES = 350_000  # DynamoDB allows 400 KB per item; keep room for the other attributes


class CodecError(ValueError):
    """Bytes that are not an encoded bar block, or bars that cannot be encoded."""


def encode(bars: pd.DataFrame) -> tuple[bytes, str]:
    """(compressed block, checksum) of bars sorted by time, columns timestamp/open/high/low/close/volume/trade_count/vwap."""
    seconds = bars["timestamp"].astype("int64").to_numpy() // 1_000_000_000
    return encode_columns(seconds, {c: bars[c].to_numpy() for c in (*FLOAT_COLUMNS, "trade_count")})


def encode_columns(seconds: np.ndarray, columns: dict[str, np.ndarray]) -> tuple[bytes, str]:
    """The same from plain arrays: epoch seconds plus one array per column (the fast path for many blocks)."""
    if len(seconds) == 0:
        raise CodecError("no bars to encode")
    offsets = seconds - seconds[0]
    if offsets.max() >= 2**31:
        raise CodecError("bars of one block must span less than 68 years")
    raw = b"".join([
        offsets.astype("<i4").tobytes(),
        *(np.asarray(columns[c], dtype="<f8").tobytes() for c in FLOAT_COLUMNS),
        np.asarray(columns["trade_count"], dtype="<i8").tobytes(),
    ])
    block = HEADER.pack(VERSION, len(seconds), int(seconds[0])) + zlib.compress(raw, 6)
    if len(block) > MAX_ITEM_BYTES:
        raise CodecError(f"{len(seconds)} bars encode to {len(block)} bytes, over the {MAX_ITEM_BYTES}-byte item budget")
    return block, checksum(raw)


def decode(block: bytes) -> tuple[pd.DataFrame, str]:
    """The bars of a block (timestamp UTC plus the value columns) and the checksum of its columns."""
    try:
        version, count, first = HEADER.unpack_from(block)
        raw = zlib.decompress(block[HEADER.size :])
    except (struct.error, zlib.error) as exc:
        raise CodecError(f"not an encoded bar block: {exc}") from None
    if version != VERSION or len(raw) != count * (4 + 8 * len(FLOAT_COLUMNS) + 8):
        raise CodecError(f"bar block version {version} with {count} bars does not match its {len(raw)} bytes")
    offsets = np.frombuffer(raw, "<i4", count)
    position = 4 * count
    columns = {}
    for name in FLOAT_COLUMNS:
        columns[name] = np.frombuffer(raw, "<f8", count, position)
        position += 8 * count
    trade_count = np.frombuffer(raw, "<i8", count, position)
    frame = pd.DataFrame({
        "timestamp": pd.to_datetime((first + offsets.astype("int64")) * 1_000_000_000, utc=True),
        "open": columns["open"], "high": columns["high"], "low": columns["low"], "close": columns["close"],
        "volume": columns["volume"], "trade_count": trade_count, "vwap": columns["vwap"],
    })
    return frame, checksum(raw)


def checksum(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:32]
