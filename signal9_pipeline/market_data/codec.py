"""The block of bars stored in one DynamoDB item, in a format every Signal9 service can read.

A block is one Apache Arrow IPC *stream* (schema, one record batch, end-of-stream marker), gzip-compressed
(RFC 1952). Arrow IPC is the columnar format that pyarrow, Arrow JS (`apache-arrow`) and arrow-go read
as they come; gzip is in the standard library of Python, Node.js, Go and browsers. Arrow's own body
compression (LZ4_FRAME, ZSTD) is not used: `apache-arrow` on npm reads it only with a codec library the
reader brings and registers itself (apache/arrow-js#14, decompression only). Blocks are compressed with
ISA-L (`isal`) at level 1, whose output is ordinary gzip that any gzip reader inflates: 11-30% more bytes than
zlib at level 6, for a sixth of its CPU (benchmarks/README.md: CPU per page, block format). The stream
format, not the file format: one batch needs no footer for random access, and the stream is the smaller.

Columns, in order: `timestamp` timestamp[s, tz=UTC]; `open`, `high`, `low`, `close`, `volume` float64;
`trade_count` int64; `vwap` float64 (a missing vwap is NaN, never an Arrow null); no nulls anywhere. The schema
metadata carries `signal9.bars.format` = "2". The checksum is the first 32 hex digits of SHA-256 over the
block's bytes, as stored, so any language verifies an item with its stock hash before decoding it.

Blocks of format 1 (a version byte 1, a header and zlib-compressed columns, whose checksum covers the
uncompressed columns) are still decoded, with their own checksum; anything else is refused with
`CodecError`. The README's "Block format" section shows readers in other languages.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
from isal import isal_zlib

from signal9_pipeline import memory

FORMAT_KEY, FORMAT = b"signal9.bars.format", b"2"
FLOAT_COLUMNS = ("open", "high", "low", "close", "volume", "vwap")
SCHEMA = pa.schema([pa.field("timestamp", pa.timestamp("s", tz="UTC"), nullable=False),
                    *(pa.field(c, pa.float64(), nullable=False) for c in FLOAT_COLUMNS[:5]),
                    pa.field("trade_count", pa.int64(), nullable=False),
                    pa.field("vwap", pa.float64(), nullable=False)], metadata={FORMAT_KEY: FORMAT})
GZIP_MAGIC = b"\x1f\x8b"
memory.configure()  # blocks are many small, short-lived arrays: freed memory must go back (see memory.py)
GZIP_LEVEL = 1  # ISA-L's levels 0-3; 1 and 2 cost alike, level 3 saves about 3% for twice the time
GZIP_WBITS = 31  # a gzip member (RFC 1952), as `gzip.decompress` and every gzip reader expect
MAX_ITEM_BYTES = 350_000  # DynamoDB allows 400 KB per item; keep room for the other attributes

LEGACY_VERSION = 1
LEGACY_HEADER = struct.Struct("<BIq")  # version, bar count, first timestamp (epoch seconds)


class CodecError(ValueError):
    """Bytes that are not an encoded bar block, or bars that cannot be encoded."""


_TIMESTAMP = SCHEMA.field("timestamp").type
_VALUE_DTYPES = [(f.name, f.type.to_pandas_dtype()) for f in list(SCHEMA)[1:]]
_SCHEMA_MESSAGE = SCHEMA.serialize().to_pybytes()
_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"


def encode(bars: pd.DataFrame) -> tuple[bytes, str]:
    """(block, checksum) of bars sorted by time, columns timestamp/open/high/low/close/volume/trade_count/vwap."""
    seconds = bars["timestamp"].astype("int64").to_numpy() // 1_000_000_000
    return encode_columns(seconds, {c: bars[c].to_numpy() for c in (*FLOAT_COLUMNS, "trade_count")})


def encode_columns(seconds: np.ndarray, columns: dict[str, np.ndarray]) -> tuple[bytes, str]:
    """The same from plain arrays: epoch seconds plus one array per column."""
    return encode_batch(bars_batch(seconds, columns))


def bars_batch(seconds: np.ndarray, columns: dict[str, np.ndarray]) -> pa.RecordBatch:
    """Bars as a record batch of SCHEMA, sharing the arrays' memory: a page's batch is cut into its buckets' slices."""
    arrays = [pa.array(np.asarray(seconds, dtype=np.int64)).view(_TIMESTAMP)]
    arrays += [pa.array(np.asarray(columns[name], dtype=dtype)) for name, dtype in _VALUE_DTYPES]
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


def encode_batch(batch: pa.RecordBatch) -> tuple[bytes, str]:
    """(block, checksum) of a record batch of SCHEMA (a slice of a bigger one writes only its own rows)."""
    if batch.num_rows == 0:
        raise CodecError("no bars to encode")
    if any(column.buffers()[1].size != batch.num_rows * 8 for column in batch.columns):
        # A slice at offset 0 whose buffers are within Arrow's 64-byte padding of its rows is written whole by the
        # IPC writer, so the same bars would encode to other bytes (another checksum) by the page they came from.
        batch = batch.take(pa.array(np.arange(batch.num_rows)))
    # The stream a pyarrow IPC writer emits, byte for byte (a test checks it): schema, batch, end-of-stream.
    stream = _SCHEMA_MESSAGE + batch.serialize().to_pybytes() + _END_OF_STREAM
    block = isal_zlib.compress(stream, GZIP_LEVEL, wbits=GZIP_WBITS)
    if len(block) > MAX_ITEM_BYTES:
        raise CodecError(f"{batch.num_rows} bars encode to {len(block)} bytes, over the {MAX_ITEM_BYTES}-byte item "
                         "budget: store fewer bars per item")
    return block, checksum(block)


def decode(block: bytes) -> tuple[pd.DataFrame, str]:
    """The bars of a block (timestamp UTC plus the value columns) and the checksum to compare with the item's."""
    seconds, columns, actual = decode_columns(block)
    return _frame(seconds, columns), actual


def decode_columns(block: bytes) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
    """The bars of a block as plain arrays (epoch seconds, one array per value column) and the checksum to compare
    with the item's: what a read of many blocks concatenates before it builds one frame."""
    block = bytes(block)
    if block[:1] == bytes([LEGACY_VERSION]):
        return _decode_legacy(block)
    if not block.startswith(GZIP_MAGIC):
        raise CodecError(f"not an encoded bar block: starts with {block[:4].hex() or 'nothing'}, "
                         "neither gzip (1f8b) nor format 1 (01)")
    try:
        table = ipc.open_stream(gzip.decompress(block)).read_all()
    except (OSError, EOFError, zlib.error, pa.ArrowInvalid) as exc:
        raise CodecError(f"not an encoded bar block: {exc}") from None
    if not table.schema.equals(SCHEMA, check_metadata=True):
        raise CodecError(f"bar block schema {table.schema.to_string(show_schema_metadata=True)!r} is not format "
                         f"{FORMAT.decode()}'s {SCHEMA.to_string(show_schema_metadata=True)!r}")
    if any(column.null_count for column in table.columns):
        raise CodecError("bar block holds Arrow nulls; format 2 stores a missing vwap as NaN and nothing else as null")
    seconds = table.column("timestamp").cast(pa.int64()).to_numpy()
    return seconds, {name: table.column(name).to_numpy() for name in SCHEMA.names[1:]}, checksum(block)


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def _frame(seconds: np.ndarray, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame({"timestamp": pd.to_datetime(seconds.astype("int64") * 1_000_000_000, utc=True),
                         **{name: columns[name] for name in SCHEMA.names[1:]}})


def _decode_legacy(block: bytes) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
    """A format-1 block: header, then zlib of int32 offsets from the first timestamp, six float64, one int64 column."""
    try:
        _, count, first = LEGACY_HEADER.unpack_from(block)
        raw = zlib.decompress(block[LEGACY_HEADER.size :])
    except (struct.error, zlib.error) as exc:
        raise CodecError(f"not an encoded bar block: {exc}") from None
    if len(raw) != count * (4 + 8 * len(FLOAT_COLUMNS) + 8):
        raise CodecError(f"bar block of format 1 with {count} bars does not match its {len(raw)} bytes")
    columns, position = {}, 4 * count
    for name in FLOAT_COLUMNS:
        columns[name] = np.frombuffer(raw, "<f8", count, position)
        position += 8 * count
    columns["trade_count"] = np.frombuffer(raw, "<i8", count, position)
    return first + np.frombuffer(raw, "<i4", count).astype("int64"), columns, checksum(raw)
