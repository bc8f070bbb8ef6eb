"""Contract (a): every real recorded bars page goes through the pipeline and comes back exactly from read_bars.

The recorded pages are replayed over HTTP (`replay.ReplayServer`) as Alpaca's
market-data host; the trading host stays the local sandbox. Partitions are
materialized with the real CLI (`dg launch --partition-range`), one run per
group of recordings of one timeframe whose symbols do not collide, and every
recorded bar must then be stored and read back unchanged: nothing refused,
nothing dropped, nothing altered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pytest

from signal9_pipeline.market_data import read_bars
from signal9_pipeline.market_data.days import CRYPTO, EQUITY
from signal9_pipeline_tests.contract import corpus
from signal9_pipeline_tests.contract.launch import Launcher, list_assets
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

    def expected_figures(self) -> dict[str, int]:
        """The run's bars by session, zero-trade bars and missing symbol-days, worked out from the recordings and
        the XNYS calendar alone: an equity intraday bar is regular when it overlaps the session, pre-market when
        it ends by the open, post-market otherwise; crypto and daily bars are regular."""
        figures = dict.fromkeys(("pre_market", "regular", "post_market", "zero_trade"), 0)
        present: dict[date, set[str]] = {}
        step = pd.Timedelta(minutes={"1Min": 1, "5Min": 5, "15Min": 15, "30Min": 30,
                                     "1Hour": 60}.get(self.timeframe, 0))
        for symbol, (asset_class, bars) in self.bars.items():
            for stamp, bar in bars.items():
                t = pd.Timestamp(stamp)
                present.setdefault(_day(t, asset_class), set()).add(symbol)
                figures["zero_trade"] += bar["v"] == 0
                if asset_class == CRYPTO or self.timeframe == "1Day":
                    figures["regular"] += 1
                    continue
                session = XNYS.schedule.loc[pd.Timestamp(_day(t, asset_class))]
                figures["pre_market" if t + step <= session["open"] else
                        "regular" if t < session["close"] else "post_market"] += 1
        days = pd.date_range(self.days()[0], self.days()[-1]).date
        expected = {d: {s for s, (c, _) in self.bars.items() if c == CRYPTO or XNYS.is_session(pd.Timestamp(d))}
                    for d in days}
        figures["missing_symbol_days"] = sum(len(symbols - present.get(d, set())) for d, symbols in expected.items())
        return figures

    def name(self) -> str:
        return f"{self.timeframe}-{len(self.entries)}-recordings-{'-'.join(sorted(self.bars))}"


def _day(stamp: pd.Timestamp, asset_class: str) -> date:
    return (stamp.tz_convert("America/New_York") if asset_class == EQUITY else stamp.tz_convert("UTC")).date()


def planned_runs() -> list[Run]:
    """As few CLI runs as the recordings allow: one per timeframe, more only where two recordings disagree."""
    runs: list[Run] = []
    for entry in corpus.of_kind(*corpus.BARS_KINDS, *corpus.LATEST_KINDS):
        if not entry.replayable:
            continue
        asset_class = CRYPTO if entry.crypto else EQUITY
        recorded = {s: (asset_class, b) for s, b in entry.bars_by_symbol().items()}
        run = next((r for r in runs if r.accepts(entry.timeframe, recorded)), None)
        if run is None:
            run = Run(entry.timeframe)
            runs.append(run)
        run.add(entry, recorded)
    return runs


RUNS = planned_runs()
XNYS = xcals.get_calendar("XNYS")


def recorded_frame(bars: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame({"timestamp": pd.to_datetime([b["t"] for b in bars], utc=True, format="ISO8601")})
    for short, name in FIELDS.items():
        frame[name] = [b.get(short, 0 if short == "n" else np.nan) for b in bars]
        frame[name] = frame[name].astype("float64")
    return frame


@pytest.mark.parametrize("run", RUNS, ids=[r.name() for r in RUNS])
def test_every_recorded_bar_is_stored_and_read_back_exactly(run: Run, bars_env, replay, tmp_path):
    replay.clear()
    for symbol, (asset_class, _) in run.bars.items():
        replay.load(PATHS["crypto_bars" if asset_class == CRYPTO else "stock_bars"], run.timeframe,
                    {symbol: run.recorded(symbol)})
    list_assets(bars_env, {s: c for s, (c, _) in run.bars.items()})  # exactly the recorded symbols: the 1Day universe
    days = run.days()
    outcome = Launcher(tmp_path / "dagster", replay.url, days[0]).launch(run.timeframe, days[0], days[-1],
                                                                        ",".join(sorted(run.bars)))
    metadata = outcome.metadata
    assert metadata["bars_held_back"].value == 0, metadata["held_back"].value
    assert outcome.passed("ohlc_consistent", "timestamps_valid", "stored_equals_fetched")
    assert metadata["bars_written"].value == sum(len(b) for _, b in run.bars.values())
    # Every session is counted as the recordings and the calendar say, and a symbol-day with only extended-hours
    # bars (e.g. AAPL's 19:59 minute on 2021-10-11) is present for the completeness check.
    expected = run.expected_figures()
    assert {k: metadata[f"bars_{k}"].value for k in ("pre_market", "regular", "post_market", "zero_trade")} == \
        {k: expected[k] for k in ("pre_market", "regular", "post_market", "zero_trade")}
    assert outcome.checks["completeness"].metadata["missing_symbol_days"].value == expected["missing_symbol_days"]
    # Each partition of the range has its own observation, whose bars are those recorded on its date.
    per_day = {d: 0 for d in pd.date_range(days[0], days[-1]).date}
    for asset_class, bars in run.bars.values():
        for stamp in bars:
            per_day[_day(pd.Timestamp(stamp), asset_class)] += 1
    assert {k: m["bars_written"].value for k, m in outcome.observations.items()} == \
        {f"{d.isoformat()}|{run.timeframe}": n for d, n in per_day.items()}
    for symbol in run.bars:
        expected = recorded_frame(run.recorded(symbol)).sort_values("timestamp", ignore_index=True)
        stored = read_bars(symbol, run.timeframe, expected["timestamp"].min().to_pydatetime(),
                           expected["timestamp"].max().to_pydatetime())
        pd.testing.assert_frame_equal(stored.astype({"trade_count": "float64"}), expected, check_like=True)
    stock_requests = [q for path, q in replay.served if path == PATHS["stock_bars"]]
    assert all(q.get("feed") == "iex" for q in stock_requests)  # the feed is always sent, IEX by default
