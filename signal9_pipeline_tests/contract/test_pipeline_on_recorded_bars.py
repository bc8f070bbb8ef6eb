"""Contract (a): every real recorded bars page goes through the pipeline and comes back exactly from read_bars.

The recorded pages are replayed over HTTP (`replay.ReplayServer`) as Alpaca's
market-data host; the trading host stays the local sandbox. Partitions are
materialized with the real CLI (`dg launch --partition-range`), one run per
group of recordings of one timeframe whose symbols do not collide, and every
recorded bar must then be stored and read back unchanged: nothing refused,
nothing dropped, nothing altered.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass, field
from datetime import date

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from signal9_pipeline.market_data import read_bars
from signal9_pipeline.market_data.days import CRYPTO, EQUITY
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline_tests.conftest import PROJECT_ROOT, VENV_BIN
from signal9_pipeline_tests.contract import corpus
from signal9_pipeline_tests.contract.replay import PATHS

FIELDS = {"o": "open", "h": "high", "l": "low", "c": "close", "v": "volume", "n": "trade_count", "vw": "vwap"}


@dataclass
class Run:
    """Recordings of one timeframe replayed together: a symbol's recordings merge where they agree bar for bar."""

    timeframe: str
    entries: list[corpus.Entry] = field(default_factory=list)
    bars: dict[str, tuple[str, dict[str, dict]]] = field(default_factory=dict)  # symbol -> (class, {t: bar})

    def accepts(self, timeframe: str, recorded: dict[str, tuple[str, list[dict]]]) -> bool:
        if timeframe != self.timeframe:
            return False
        for symbol, (asset_class, bars) in recorded.items():
            known_class, known = self.bars.get(symbol, (asset_class, {}))
            if known_class != asset_class or any(known.get(b["t"], b) != b for b in bars):
                return False  # e.g. the same day recorded from the IEX and the SIP feed: a run of its own
        return True

    def add(self, entry: corpus.Entry, recorded: dict[str, tuple[str, list[dict]]]) -> None:
        self.entries.append(entry)
        for symbol, (asset_class, bars) in recorded.items():
            self.bars.setdefault(symbol, (asset_class, {}))[1].update({b["t"]: b for b in bars})

    def recorded(self, symbol: str) -> list[dict]:
        return list(self.bars[symbol][1].values())

    def days(self) -> list[date]:
        return sorted({_day(pd.Timestamp(t), c) for c, bars in self.bars.values() for t in bars})

    def name(self) -> str:
        return f"{self.timeframe}-{len(self.entries)}-recordings-{'-'.join(sorted(self.bars))}"


def _day(stamp: pd.Timestamp, asset_class: str) -> date:
    return (stamp.tz_convert("America/New_York") if asset_class == EQUITY else stamp.tz_convert("UTC")).date()


def planned_runs() -> list[Run]:
    """As few CLI runs as the recordings allow: one per timeframe, more only where two recordings disagree."""
    runs: list[Run] = []
    for entry in corpus.of_kind(*corpus.BARS_KINDS):
        if not entry.replayable:
            continue
        asset_class = CRYPTO if entry.kind == "crypto_bars" else EQUITY
        recorded = {s: (asset_class, b) for s, b in entry.bars_by_symbol().items()}
        run = next((r for r in runs if r.accepts(entry.timeframe, recorded)), None)
        if run is None:
            run = Run(entry.timeframe)
            runs.append(run)
        run.add(entry, recorded)
    return runs


RUNS = planned_runs()


def recorded_frame(bars: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame({"timestamp": pd.to_datetime([b["t"] for b in bars], utc=True, format="ISO8601")})
    for short, name in FIELDS.items():
        frame[name] = [b.get(short, 0 if short == "n" else np.nan) for b in bars]
        frame[name] = frame[name].astype("float64")
    return frame


def launch(env: dict[str, str], run: Run) -> subprocess.CompletedProcess:
    days = run.days()
    partition_range = f"{days[0].isoformat()}|{run.timeframe}...{days[-1].isoformat()}|{run.timeframe}"
    return subprocess.run([str(VENV_BIN / "dg"), "launch", "--assets", "ohlc_bars", "--partition-range", partition_range],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("run", RUNS, ids=[r.name() for r in RUNS])
def test_every_recorded_bar_is_stored_and_read_back_exactly(run: Run, bars_env, replay, tmp_path, monkeypatch):
    replay.clear()
    for symbol, (asset_class, _) in run.bars.items():
        replay.load(PATHS["crypto_bars" if asset_class == CRYPTO else "stock_bars"], run.timeframe,
                    {symbol: run.recorded(symbol)})
    # The assets table holds exactly the recorded symbols, listed, with their classes (the 1Day universe).
    dynamodb = DynamoDBResource.from_settings()
    dynamodb.put_items(bars_env["SIGNAL9_ASSETS_TABLE"], [
        {"asset_id": f"ASSET#{s}", "symbol": s, "asset_class": c, "status": "active", "tradable": True,
         "alpaca_id": str(uuid.uuid5(uuid.NAMESPACE_URL, s))} for s, (c, _) in run.bars.items()])
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home), "VIRTUAL_ENV": str(VENV_BIN.parent), "ALPACA_DATA_URL": replay.url,
           "SIGNAL9_BARS_START_DATE": run.days()[0].isoformat(), "SIGNAL9_INTRADAY_WATCHLIST": ",".join(sorted(run.bars))}
    done = launch(env, run)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert [r.status for r in instance.get_runs()] == [dg.DagsterRunStatus.SUCCESS]
        event = instance.get_latest_materialization_event(dg.AssetKey("ohlc_bars"))
        metadata = event.asset_materialization.metadata
        checks = {c.check_name: c.passed for c in _check_evaluations(instance, event.run_id)}
    assert metadata["bars_held_back"].value == 0, metadata["held_back"].value
    assert checks["ohlc_consistent"] and checks["timestamps_valid"] and checks["stored_equals_fetched"]
    assert metadata["bars_written"].value == sum(len(b) for _, b in run.bars.values())
    for symbol in run.bars:
        expected = recorded_frame(run.recorded(symbol)).sort_values("timestamp", ignore_index=True)
        stored = read_bars(symbol, run.timeframe, expected["timestamp"].min().to_pydatetime(),
                           expected["timestamp"].max().to_pydatetime())
        pd.testing.assert_frame_equal(stored.astype({"trade_count": "float64"}), expected, check_like=True)
    stock_requests = [q for path, q in replay.served if path == PATHS["stock_bars"]]
    assert all(q.get("feed") == "iex" for q in stock_requests)  # the feed is always sent, IEX by default


def _check_evaluations(instance: dg.DagsterInstance, run_id: str):
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    return [r.event_log_entry.dagster_event.event_specific_data for r in records]
