"""The corpus itself: every recording is indexed with its provenance, and conversions are the stated ones."""

from __future__ import annotations

import hashlib

import pytest

from signal9_pipeline_tests.contract import corpus

INDEXED = {e.file for e in corpus.entries()}


def test_every_file_is_indexed_and_every_entry_has_its_file():
    on_disk = {str(p.relative_to(corpus.CORPUS)) for p in corpus.CORPUS.rglob("*")
               if p.is_file() and p.name not in ("README.md", "index.json")}
    assert on_disk == INDEXED
    assert len({e.name for e in corpus.entries()}) == len(corpus.entries())


@pytest.mark.parametrize("entry", corpus.entries(), ids=lambda e: e.name)
def test_every_recording_names_its_source_and_says_how_it_was_converted(entry: corpus.Entry):
    assert entry.source.get("url", "").startswith("https://"), entry.name
    assert entry.verbatim or entry.conversion, f"{entry.name}: converted, but the conversion is not described"
    if entry.source.get("sha256"):  # a source kept byte for byte
        assert hashlib.sha256((corpus.CORPUS / entry.file).read_bytes()).hexdigest() == entry.source["sha256"]


def test_a_dataframe_csv_reads_back_as_alpacas_bars():
    text = ("symbol,timestamp,open,high,low,close,volume,trade_count,vwap\n"
            "AAPL,2024-07-01 20:00:00+00:00,216.75,217.35,216.62,217.35,6543170.0,561.0,216.751388\n")
    assert corpus.bars_from_dataframe_csv(text) == {"bars": {"AAPL": [
        {"t": "2024-07-01T20:00:00Z", "o": 216.75, "h": 217.35, "l": 216.62, "c": 217.35, "v": 6543170, "n": 561,
         "vw": 216.751388}]}, "next_page_token": None}


@pytest.mark.parametrize("row,fault", [
    ("AAPL,2024-07-01 16:00:00-04:00,1,1,1,1,1.0,1.0,1", "not in UTC"),
    ("AAPL,2024-07-01 20:00:00+00:00,1,1,1,1,1.5,1.0,1", "fractional count"),
])
def test_a_dataframe_csv_that_is_not_alpacas_is_refused(row: str, fault: str):
    with pytest.raises(ValueError, match=fault):
        corpus.bars_from_dataframe_csv("symbol,timestamp,open,high,low,close,volume,trade_count,vwap\n" + row + "\n")
