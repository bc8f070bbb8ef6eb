"""A TypeScript service resolves a symbol to its company as of a date and reads that company's series (read_symbol.mjs),
or many symbols' series at once with BatchGetItem (read_symbols.mjs).

The assets table goes through a reused ticker as the daily sync records it: OldCo under TICK, delisted on
2024-03-01; NewCo, another company, listed under TICK on 2024-04-01. Node's reader (the AWS SDK for JavaScript,
apache-arrow) must find OldCo's bars for TICK as of February and NewCo's for TICK today, exactly as `read_bars`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
import requests

from signal9_pipeline.market_data import read_bars
from signal9_pipeline_tests.conftest import PROJECT_ROOT
from signal9_pipeline_tests.support import company_row, materialize_bars, point_alpaca_at, sync_rows

READER = Path(__file__).with_name("read_symbol.mjs")
MANY = Path(__file__).with_name("read_symbols.mjs")
OLDCO, NEWCO, STAY = ("6a1b3c5d-7e9f-4a0b-8c1d-2e3f4a5b6c7d", "9d8c7b6a-5f4e-4d3c-ab2a-190817263544",
                      "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9")


def read_by_node(symbol: str, timeframe: str, start: datetime, end: datetime, as_of: date | None = None) -> dict:
    assert shutil.which("node"), "node not found: install Node.js 20+ and run `make install` (npm ci)"
    assert (PROJECT_ROOT / "node_modules" / "@aws-sdk" / "client-dynamodb").is_dir(), (
        "AWS SDK missing: run `make install`")
    argv = ["node", str(READER), symbol, timeframe, f"{start.isoformat()}Z", f"{end.isoformat()}Z",
            *([as_of.isoformat()] if as_of else [])]
    done = subprocess.run(argv, cwd=PROJECT_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def as_frame(bars: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(bars)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="s", utc=True)
    return frame


@pytest.fixture
def reused_ticker(bars_env, sandbox_factory, default_universe, monkeypatch):
    template = next(a for a in default_universe if a["symbol"] == "AAPL")
    oldco = {**template, "id": OLDCO, "symbol": "TICK"}
    stay = {**template, "id": STAY, "symbol": "STAY"}
    server = sandbox_factory([oldco, stay])
    point_alpaca_at(server, monkeypatch)
    rows = {"oldco": company_row("TICK", alpaca_id=OLDCO), "stay": company_row("STAY", alpaca_id=STAY)}
    sync_rows(list(rows.values()), "2024-01-03T04:00:00Z", "2024-01-03")
    delisted = [{**oldco, "status": "inactive", "tradable": False}, stay]
    newco = {**template, "id": NEWCO, "symbol": "TICK"}
    for universe, day, before in ((delisted, "2024-03-01", "2024-01-03"),
                                  (delisted + [newco], "2024-04-01", "2024-03-01")):
        requests.put(f"{server.url}/_sandbox/universe", params={"effective": day}, json=universe,
                     timeout=30).raise_for_status()
        rows["oldco"] = company_row("TICK", alpaca_id=OLDCO, status="inactive", tradable=False)
        if day == "2024-04-01":
            rows["newco"] = company_row("TICK", alpaca_id=NEWCO)
        sync_rows(list(rows.values()), f"{day}T04:00:00Z", day, before)
    assert materialize_bars("1Day", "2024-01-03", "2024-06-10").success
    return bars_env


def test_node_resolves_a_reused_ticker_as_of_a_date_and_reads_that_companys_series(reused_ticker):
    window = datetime(2024, 1, 1), datetime(2024, 6, 11)
    for as_of, company in ((date(2024, 2, 1), OLDCO), (None, NEWCO), (date(2024, 3, 15), OLDCO)):
        by_node = read_by_node("TICK", "1Day", *window, as_of)
        assert by_node["alpacaId"] == company, as_of
        expected = read_bars("TICK", "1Day", *window, as_of=as_of)
        assert len(expected) > 0
        pd.testing.assert_frame_equal(as_frame(by_node["bars"])[expected.columns.tolist()], expected, check_dtype=False)
    old, new = (as_frame(read_by_node("TICK", "1Day", *window, d)["bars"]) for d in (date(2024, 2, 1), None))
    assert (old["timestamp"].max() < pd.Timestamp("2024-03-01", tz="UTC") <= pd.Timestamp("2024-04-01", tz="UTC")
            <= new["timestamp"].min())
    done = subprocess.run(["node", str(READER), "NOPE", "1Day", "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"],
                          cwd=PROJECT_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "no company held NOPE" in done.stderr  # a symbol nobody held: an error, not no bars


def test_node_reads_many_symbols_with_batch_get_item_as_read_bars_does(reused_ticker):
    window = datetime(2024, 1, 1), datetime(2024, 6, 11)
    for as_of, tick in ((date(2024, 2, 1), OLDCO), (None, NEWCO)):
        argv = ["node", str(MANY), "STAY,TICK,STAY", "1Day", f"{window[0].isoformat()}Z", f"{window[1].isoformat()}Z",
                *([as_of.isoformat()] if as_of else [])]
        done = subprocess.run(argv, cwd=PROJECT_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        by_node = json.loads(done.stdout)
        assert by_node["alpacaIds"] == {"STAY": STAY, "TICK": tick}
        expected = read_bars(["STAY", "TICK"], "1Day", *window, as_of=as_of)
        assert set(expected["symbol"]) == {"STAY", "TICK"}
        pd.testing.assert_frame_equal(as_frame(by_node["bars"])[expected.columns.tolist()], expected, check_dtype=False)
    done = subprocess.run(["node", str(MANY), "STAY,NOPE", "1Day", "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"],
                          cwd=PROJECT_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "no company held NOPE" in done.stderr
