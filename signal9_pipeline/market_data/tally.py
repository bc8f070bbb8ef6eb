"""A bars run's accounting: what it stored, held back and changed, per (timeframe, day), for its metadata and checks.

`RunTally` is filled as the run goes (screening verdicts, writes, revisions) and read by `ohlc_bars` and
pollenation's history load when the run is done; it keeps a bounded, uniform sample of the written items for the
read-back.
"""

from __future__ import annotations

import collections
import random
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from signal9_pipeline.market_data.days import CRYPTO, POST, PRE, REGULAR, is_session
from signal9_pipeline.market_data.ledger import Revision
from signal9_pipeline.market_data.screening import FAULT, BarProblem, Screening, fault_parts

if TYPE_CHECKING:
    from signal9_pipeline.market_data.universe import Listing

READBACK_SAMPLE = 25_000  # items whose checksums a run reads back; a random sample beyond
MAX_NAMED = 200  # restated bars named in a run's check and log
DAY_FIGURES = ("bars", "pre_market", "regular", "post_market", "zero_trade", "held_back")


@dataclass
class RunTally:
    bars: int = 0
    items: int = 0
    write_requests: int = 0
    problems: list[BarProblem] = field(default_factory=list)
    vwap_outside_range: int = 0
    held_back_timeless: int = 0  # held-back bars without a readable time, so of no day
    outside_window: int = 0  # bars Alpaca answered for days the run did not ask for; not stored
    kept_from_earlier: int = 0  # stored bars kept at the times of held-back bars
    write_conflicts: int = 0  # conditional puts that lost to another run's write, then merged again
    largest_block_bytes: int = 0  # the largest `bars` attribute written (DynamoDB allows 400 KB per item)
    # (timeframe, day) -> DAY_FIGURES
    by_day: dict[tuple[str, str], dict[str, int]] = field(
        default_factory=lambda: collections.defaultdict(lambda: dict.fromkeys(DAY_FIGURES, 0)))
    # day -> asset ids
    companies_with_bars: dict[str, set] = field(default_factory=lambda: collections.defaultdict(set))
    labels: dict[str, str] = field(default_factory=dict)  # asset id -> the symbol its bars were asked under
    unrequested: list[str] = field(default_factory=list)  # companies no (symbol, asof) could ask for, and why
    # a sample: key -> (version, checksum)
    written: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)
    sample_keys: list[tuple[str, str]] = field(default_factory=list)
    items_seen: int = 0
    revised: dict[tuple[str, str], collections.Counter] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter))
    largest_change: dict[tuple[str, str], float] = field(default_factory=dict)  # (timeframe, day) -> relative
    beyond_tolerance: list[str] = field(default_factory=list)  # the first MAX_NAMED restated bars worth a look
    beyond_tolerance_count: int = 0
    revisions: list[Revision] = field(default_factory=list)  # one per write that changed stored bars
    sampler: random.Random = field(default_factory=lambda: random.Random(0))

    def remember(self, key: tuple[str, str], checksum) -> None:
        """Reservoir sampling: a uniform sample of at most READBACK_SAMPLE written items, memory bounded."""
        self.items_seen += 1
        if len(self.sample_keys) < READBACK_SAMPLE:
            self.sample_keys.append(key)
        else:
            slot = self.sampler.randrange(self.items_seen)
            if slot >= READBACK_SAMPLE:
                return
            del self.written[self.sample_keys[slot]]
            self.sample_keys[slot] = key
        self.written[key] = checksum

    def count_revision(self, revision: Revision) -> None:
        for day, counts in revision.by_day.items():
            self.revised[(revision.timeframe, day)].update(counts)
        for day, largest in revision.largest.items():
            key = (revision.timeframe, day)
            self.largest_change[key] = max(self.largest_change.get(key, 0.0), largest)
        self.beyond_tolerance_count += revision.beyond_count
        self.beyond_tolerance += revision.beyond[:max(0, MAX_NAMED - len(self.beyond_tolerance))]
        self.revisions.append(revision.without_names())

    def count_screening(self, timeframe: str, bars: pd.DataFrame, verdict: Screening) -> None:
        self.problems += verdict.problems
        self.vwap_outside_range += int(verdict.vwap_outside.sum())
        sound = ~verdict.held_back
        index, days = pd.factorize(bars["day"].to_numpy())
        figures = {"bars": sound, "held_back": verdict.held_back, "zero_trade": sound & verdict.zero_trade,
                   "pre_market": sound & (verdict.session == PRE), "regular": sound & (verdict.session == REGULAR),
                   "post_market": sound & (verdict.session == POST)}
        names = list(figures)
        counts = np.stack([np.bincount(index, weights=figures[name], minlength=len(days)) for name in names], axis=1)
        # plain ints: a 5-year page has 1,256 days
        for day, row in zip(days.tolist(), counts.astype(np.int64).tolist()):
            figures_of_day = self.by_day[(timeframe, str(day))]
            for name, count in zip(names, row):
                figures_of_day[name] += count

    def count_timeless(self, bars: pd.DataFrame) -> None:
        """Bars whose time could not be read: held back, named by symbol and fault; they belong to no day."""
        self.held_back_timeless += len(bars)
        faults = bars[FAULT].tolist() if FAULT in bars else [None] * len(bars)
        for symbol, fault in zip(bars["symbol"].tolist(), faults):
            name, reason = fault_parts(fault) if isinstance(fault, str) else ("t", "not a time")
            self.problems.append(BarProblem(symbol, "", "(no time)", name, reason))

    def totals(self) -> collections.Counter:
        total: collections.Counter = collections.Counter({k: 0 for k in DAY_FIGURES})
        for figures in self.by_day.values():
            total.update(figures)
        total["held_back"] += self.held_back_timeless
        return total


def completeness(listings: dict[str, Listing], by_day: dict[date, set[str]], tally: RunTally) -> tuple[float, int]:
    """Share of (company, day) pairs expected to trade that have bars (extended hours count), and how many are
    missing."""
    expected = present = 0
    for d, companies in by_day.items():
        trading = companies if is_session(d) else {i for i in companies if listings[i].asset_class == CRYPTO}
        expected += len(trading)
        present += len(tally.companies_with_bars.get(d.isoformat(), set()) & trading)
    return (present / expected if expected else 1.0), expected - present
