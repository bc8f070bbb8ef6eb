"""The stored bar block is readable outside Python: Node.js with the pinned `apache-arrow` reads what `decode` reads.

`block_shapes` (signal9_pipeline_tests/support.py) are the item shapes the pipeline writes (an equity and a crypto
1Min day, daily bars of a year and a decade); `benchmarks/block_format.py` measures the same shapes.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from signal9_pipeline.market_data.codec import MAX_ITEM_BYTES, SCHEMA, CodecError, decode, encode_columns
from signal9_pipeline_tests.conftest import PROJECT_ROOT
from signal9_pipeline_tests.support import bars_of, block_shapes

NODE_DECODER = Path(__file__).with_name("decode_blocks.mjs")
JSON_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}  # how decode_blocks.mjs spells them
# Written by the format-1 encoder (codec.py before Arrow): 2024-06-03 09:00-09:03Z, vwap NaN in the
# second bar, a zero-trade minute (v 0, n 0, vw 0) in the third, with the checksum it stored beside it.
FORMAT_1_BLOCK = base64.b64decode(
    "AQQAAAAQhl1mAAAAAHicY2BgYLAB4gog3gLExiBwON2BAQROpDvMmgkEJxH02TMgkO4QtEOu9fVJNPmLUH0H0h3SQOAYQl4zpv/Q1xO4zQWL"
    "X4DpnwShE4ohNAxkdDn4LONyUz0OVcfwox4mNX0Cf5XZ2XQHPiifmQEVcEJpAHKeRUw=")
FORMAT_1_CHECKSUM = "e38cd5ccaf23e5adc4eafbdb4dcf79ff"


def as_json(frame: pd.DataFrame) -> dict[str, list]:
    """A decoded frame as decode_blocks.mjs prints it: epoch seconds, numbers, non-finite floats as strings."""
    columns = {"timestamp": (frame["timestamp"].astype("int64") // 1_000_000_000).tolist()}
    for name in frame.columns[1:]:
        columns[name] = [v if math.isfinite(v) else JSON_NON_FINITE[str(v)] for v in frame[name].tolist()]
    return columns


def decoded_by_node(paths: list[Path]) -> dict[str, dict]:
    assert shutil.which("node"), "node not found: install Node.js 20+ and run `make install` (npm ci)"
    assert (PROJECT_ROOT / "node_modules" / "apache-arrow").is_dir(), "apache-arrow missing: run `make install`"
    done = subprocess.run(["node", str(NODE_DECODER), *map(str, paths)], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_node_apache_arrow_reads_every_block_exactly_as_python_decodes_it(tmp_path):
    written = {}
    for number, (name, (seconds, columns)) in enumerate(block_shapes().items()):
        path = tmp_path / f"block{number}.bin"
        block, checksum = encode_columns(seconds, columns)
        path.write_bytes(block)
        written[path.name] = (name, block, checksum)
    by_node = decoded_by_node([tmp_path / file for file in written])
    arrow_js_types = {"timestamp[s, tz=UTC]": "Timestamp<SECOND, UTC>", "double": "Float64", "int64": "Int64"}
    expected_fields = [{"name": f.name, "type": arrow_js_types[str(f.type)], "nullable": False} for f in SCHEMA]
    for file, (name, block, checksum) in written.items():
        frame, decoded_checksum = decode(block)
        node = by_node[file]
        assert node["checksum"] == checksum == decoded_checksum, name
        assert node["fields"] == expected_fields and node["metadata"] == {"signal9.bars.format": "2"}, name
        assert node["batches"] == 1, name
        assert node["columns"] == as_json(frame), name
    assert "NaN" in by_node["block0.bin"]["columns"]["vwap"], "the equity day must exercise a missing vwap"
    assert 0 in by_node["block0.bin"]["columns"]["trade_count"], "and a minute without trades"


def test_a_block_is_a_gzipped_arrow_ipc_stream_that_stock_pyarrow_reads():
    seconds, columns = block_shapes()["equity 1Min day (960 bars, 04:00-20:00 New York)"]
    block, checksum = encode_columns(seconds, columns)
    stream = gzip.decompress(block)
    assert stream.startswith(b"\xff\xff\xff\xff") and stream.endswith(b"\xff\xff\xff\xff\x00\x00\x00\x00")
    table = ipc.open_stream(stream).read_all()
    assert table.schema.equals(SCHEMA, check_metadata=True) and table.num_rows == len(seconds)
    assert table.column("timestamp").cast(pa.int64()).to_pylist() == seconds.tolist()
    assert checksum == hashlib.sha256(block).hexdigest()[:32]
    assert encode_columns(seconds, columns) == (block, checksum), "the same bars must give the same item"
    frame, _ = decode(block)
    assert list(frame.dtypes.astype(str)) == ["datetime64[ns, UTC]", *(["float64"] * 5), "int64", "float64"]


def test_blocks_of_format_1_still_decode_with_the_checksum_stored_beside_them():
    frame, checksum = decode(FORMAT_1_BLOCK)
    assert checksum == FORMAT_1_CHECKSUM
    assert frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%MZ").tolist() == [
        "2024-06-03T09:00Z", "2024-06-03T09:01Z", "2024-06-03T09:02Z", "2024-06-03T09:03Z"]
    assert frame["close"].tolist() == [190.25, 190.3, 190.3, 190.5]
    assert frame["volume"].tolist() == [1200.0, 310.0, 0.0, 845.0] and frame["trade_count"].tolist() == [14, 3, 0, 9]
    assert frame["vwap"].iloc[[0, 2, 3]].tolist() == [190.2233, 0.0, 190.4129] and math.isnan(frame["vwap"].iloc[1])
    assert list(frame.dtypes.astype(str)) == ["datetime64[ns, UTC]", *(["float64"] * 5), "int64", "float64"]
    with pytest.raises(CodecError):
        decode(FORMAT_1_BLOCK[:-3])


def _gzipped_stream(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return gzip.compress(sink.getvalue().to_pybytes())


def _foreign_blocks() -> dict[str, bytes]:
    block, _ = encode_columns(*bars_of("2024-06-03T13:30Z", 5, 60, price=10.0, seed=5))
    table = ipc.open_stream(gzip.decompress(block)).read_all()
    nulls = table.set_column(7, SCHEMA.field("vwap"), pa.array([1.0, None, 1.0, 1.0, 1.0])).to_batches()[0]
    milliseconds = table.set_column(0, "timestamp", table.column("timestamp").cast(pa.timestamp("ms", tz="UTC")))
    return {"bare Arrow IPC, not gzipped": gzip.decompress(block), "Arrow nulls": _gzipped_stream(nulls),
            "millisecond timestamps": _gzipped_stream(milliseconds.to_batches()[0]),
            "no format metadata": _gzipped_stream(table.replace_schema_metadata(None).to_batches()[0]),
            "gzip of something else": gzip.compress(b"timestamp,open\n"), "truncated": block[:-9],
            "an unknown version byte": b"\x02" + FORMAT_1_BLOCK[1:], "empty": b""}


@pytest.mark.parametrize("kind", list(_foreign_blocks()))
def test_blocks_in_any_other_form_are_refused_not_misread(kind):
    with pytest.raises(CodecError):
        decode(_foreign_blocks()[kind])


def test_bars_that_would_overflow_a_dynamodb_item_are_refused_with_a_typed_error():
    rng = np.random.default_rng(6)  # random doubles do not compress: 8,000 bars take about 480 KB
    count = 8000
    columns = {name: rng.random(count) for name in ("open", "high", "low", "close", "volume", "vwap")}
    with pytest.raises(CodecError, match=f"over the {MAX_ITEM_BYTES}-byte item budget"):
        encode_columns(np.arange(count, dtype=np.int64) * 60, {**columns, "trade_count": rng.integers(0, 2**62, count)})


def test_the_block_is_exactly_the_stream_a_pyarrow_ipc_writer_emits():
    import pyarrow.ipc as ipc

    from signal9_pipeline.market_data.codec import SCHEMA, encode_columns

    seconds = np.arange(30, dtype=np.int64) * 86_400 + 1_704_171_600
    columns = {c: np.linspace(1, 2, 30) for c in ("open", "high", "low", "close", "volume", "vwap")}
    columns["trade_count"] = np.arange(30, dtype=np.int64)
    block, _ = encode_columns(seconds, columns)
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, SCHEMA) as writer:
        writer.write_batch(pa.Table.from_pydict({"timestamp": pa.array(seconds, SCHEMA.field("timestamp").type),
                                                 **columns}, schema=SCHEMA).to_batches()[0])
    assert gzip.decompress(block) == sink.getvalue().to_pybytes()


@pytest.mark.parametrize("page_rows", [4, 6, 8, 9, 100])
def test_the_same_bars_encode_to_the_same_block_whatever_page_they_were_cut_from(page_rows):
    """A bucket written new (a slice of its page's batch) and the same bucket merged again (its own columns) must
    carry the same bytes and checksum: a rerun after a crash must leave what an uninterrupted run leaves."""
    from signal9_pipeline.market_data.codec import bars_batch, encode_batch

    seconds = np.arange(page_rows, dtype=np.int64) * 86_400 + 1_704_171_600
    columns = {c: np.linspace(1, 2, page_rows) for c in ("open", "high", "low", "close", "volume", "vwap")}
    columns["trade_count"] = np.arange(page_rows, dtype=np.int64)
    page = bars_batch(seconds, columns)
    for first in (0, 1):
        expected = encode_columns(seconds[first:first + 3], {c: a[first:first + 3] for c, a in columns.items()})
        assert encode_batch(page.slice(first, 3)) == expected, (page_rows, first)
        assert encode_batch(page.take(pa.array(np.arange(first, first + 3)))) == expected
