"""Benchmark: size and speed of the stored bar block, beside the standard alternatives it was chosen over.

For the item shapes the pipeline writes (`block_shapes` of signal9_pipeline_tests/support.py, which the format's
tests use too): bytes per block as stored (format 2: gzip of an Arrow IPC stream), as a bare IPC stream, with
Arrow's own LZ4_FRAME or ZSTD body compression, as Parquet (ZSTD), and in format 1 (zlib of raw columns, before
Arrow); then the codec's encode + decode time per 10,000 bars (median of 5 rounds).

    python -m benchmarks.block_format
"""

from __future__ import annotations

import io
import os
import platform
import statistics
import time
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from signal9_pipeline.market_data.codec import FLOAT_COLUMNS, decode, encode_columns
from signal9_pipeline_tests.support import block_shapes

ROUNDS = 5


def alternatives(block: bytes, seconds: np.ndarray, columns: dict[str, np.ndarray]) -> dict[str, int]:
    """Bytes of the same bars in each candidate format."""
    table = ipc.open_stream(zlib.decompress(block, wbits=31)).read_all()

    def stream(compression: str | None) -> int:
        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, table.schema, options=ipc.IpcWriteOptions(compression=compression)) as writer:
            writer.write_table(table)
        return sink.getvalue().size

    parquet = io.BytesIO()
    pq.write_table(table, parquet, compression="zstd")
    format_1 = b"".join([(seconds - seconds[0]).astype("<i4").tobytes(),
                         *(np.asarray(columns[c], "<f8").tobytes() for c in FLOAT_COLUMNS),
                         np.asarray(columns["trade_count"], "<i8").tobytes()])
    return {"gzip(IPC), stored": len(block), "bare IPC": stream(None), "IPC LZ4_FRAME": stream("lz4"),
            "IPC ZSTD": stream("zstd"), "Parquet ZSTD": len(parquet.getvalue()),
            "format 1 (zlib)": 13 + len(zlib.compress(format_1, 6))}


def seconds_per_10k_bars(seconds: np.ndarray, columns: dict[str, np.ndarray]) -> tuple[float, float]:
    """Median encode and decode time of one block, scaled to 10,000 bars."""
    encodes, decodes = [], []
    repeats = max(1, 20_000 // len(seconds))
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(repeats):
            block, _ = encode_columns(seconds, columns)
        encodes.append((time.perf_counter() - started) / repeats)
        started = time.perf_counter()
        for _ in range(repeats):
            decode(block)
        decodes.append((time.perf_counter() - started) / repeats)
    scale = 10_000 / len(seconds)
    return statistics.median(encodes) * scale, statistics.median(decodes) * scale


def main() -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"pyarrow {pa.__version__}; command: python -m benchmarks.block_format\n")
    rows = []
    for name, (seconds, columns) in block_shapes().items():
        block, _ = encode_columns(seconds, columns)
        rows.append((name, alternatives(block, seconds, columns), *seconds_per_10k_bars(seconds, columns)))
    formats = list(rows[0][1])
    print("| block | " + " | ".join(f"{f} (bytes)" for f in formats)
          + " | encode / 10k bars (ms) | decode / 10k bars (ms) |")
    print("|---" * (len(formats) + 3) + "|")
    for name, sizes, encode_s, decode_s in rows:
        print(f"| {name} | " + " | ".join(f"{sizes[f]:,}" for f in formats)
              + f" | {encode_s * 1000:.2f} | {decode_s * 1000:.2f} |")


if __name__ == "__main__":
    main()
