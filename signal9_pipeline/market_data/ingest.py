"""The bars ingestion engine behind `ohlc_bars` and pollenation's history load: fetch, screen, merge, write.

Companies are split by asset class (their endpoints and day boundaries differ) and by the date their symbols
are asked as of (`universe.asked_as_of`: the run's last date, unless a company's symbol passed to another
company before it); each such request is fetched in a few large concurrent streams of full pages (`fetch`).
Bars are filed by company (`{alpaca_id}#{timeframe}`), never by the symbol they were asked under.

Every bar is screened (`screening.screen`): an impossible bar is held back with its reason and the rest of its
day is stored. Each bucket's share of the bars goes to the `buckets.BucketWriter`, which merges it into the
stored bucket under a conditional put; the run's figures are kept in its `tally.RunTally`.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa

from signal9_pipeline.market_data.buckets import BucketUpdate, BucketWriter
from signal9_pipeline.market_data.codec import bars_batch
from signal9_pipeline.market_data.days import CRYPTO, bucket_starts, with_days
from signal9_pipeline.market_data.fetch import expected_bars, fetch_pages, request_groups, request_window, whole_symbols
from signal9_pipeline.market_data.ledger import VALUE_COLUMNS
from signal9_pipeline.market_data.screening import Screening, screen
from signal9_pipeline.market_data.tally import RunTally
from signal9_pipeline.market_data.universe import Listing, asked_as_of, by_asset_class
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.tables.market_data import bars_series
from signal9_pipeline.timestamps import utc_stamp

CRYPTO_FEED = "us"  # Alpaca's crypto location (/v1beta3/crypto/us), recorded as the items' feed


@dataclass(frozen=True)
class IngestOptions:
    adjustment: str = "raw"
    workers: int = 4
    max_symbols_per_request: int = 2000
    run_id: str = ""  # recorded with each ledger entry


def ingest(alpaca: AlpacaResource, dynamodb: DynamoDBResource, timeframe: str, dates: list[date],
           listings: dict[str, Listing], options: IngestOptions, tally: RunTally) -> None:
    """Fetch and store every bar of the companies (asset id -> Listing) on `dates`, one window per asset class."""
    now = utc_stamp()
    for asset_class, members in by_asset_class(listings).items():  # equities first
        crypto = asset_class == CRYPTO
        describe = {"timeframe": timeframe, "asset_class": asset_class, "adjustment": options.adjustment,
                    "feed": CRYPTO_FEED if crypto else alpaca.data_feed(), "ingested_at": now, "run_id": options.run_id}
        writer = BucketWriter(dynamodb, tally, describe, crypto=crypto)
        try:
            store = PageStore(timeframe, asset_class, {d.isoformat() for d in dates}, tally, writer)
            for asof, companies in asked_as_of(members, max(dates), tally, crypto=crypto).items():
                _ingest_group(alpaca, timeframe, dates, companies, asof, options, store)
        finally:
            writer.close()


def _ingest_group(alpaca: AlpacaResource, timeframe: str, dates: list[date], companies: dict[str, str],
                  asof: str | None, options: IngestOptions, store: PageStore) -> None:
    """Fetch the bars of one request's companies (symbol -> asset id, all asked as of `asof`) and store them."""
    crypto = store.asset_class == CRYPTO
    window = request_window(dates, crypto=crypto)
    if window is None:
        return
    symbols = sorted(companies)
    groups = request_groups(symbols, options.workers, options.max_symbols_per_request,
                            expected_bars(timeframe, len(symbols), len(dates), crypto=crypto))
    pages = fetch_pages(alpaca, groups, store.asset_class, timeframe, *window, workers=options.workers,
                        adjustment=options.adjustment, asof=asof)
    for frame in whole_symbols(pages):
        store(frame, companies)


@dataclass
class PageStore:
    """Stores one page of a (timeframe, asset class) fetch: screened, cut into buckets, merged and written."""

    timeframe: str
    asset_class: str
    days: set[str]
    tally: RunTally
    writer: BucketWriter

    def __call__(self, frame: pd.DataFrame, companies: dict[str, str]) -> None:
        """Screen complete symbols' bars (vectorized over many symbols) and hand each bucket's share to the writer.

        `companies` maps each symbol of the frame to the company it was asked for (one asof group: one each).
        """
        bars = self._in_window(frame)
        if bars.empty:
            return
        verdict = screen(bars, self.timeframe, crypto=self.asset_class == CRYPTO)
        self.tally.count_screening(self.timeframe, bars, verdict)
        self._count_companies(bars, verdict, companies)
        self._hand_on(bars, verdict, companies)

    def _in_window(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame's bars with their trading `day`, sorted, without those of no day or of days not asked for
        (counted in the tally)."""
        timeless = frame["timestamp"].isna().to_numpy()  # a bar whose time is missing or not RFC 3339
        if timeless.any():
            self.tally.count_timeless(frame.loc[timeless])
            frame = frame.loc[~timeless]
        bars = with_days(frame, crypto=self.asset_class == CRYPTO)
        in_window = bars["day"].isin(self.days).to_numpy()
        if not in_window.all():  # Alpaca answered beyond the window asked: another partition's bars
            self.tally.outside_window += int((~in_window).sum())
            bars = bars.loc[in_window].reset_index(drop=True)
        return bars

    def _count_companies(self, bars: pd.DataFrame, verdict: Screening, companies: dict[str, str]) -> None:
        """Each day's companies with at least one sound bar (the run's completeness and manifests)."""
        symbols, days = bars["symbol"].to_numpy(), bars["day"].to_numpy()
        day_starts = _run_starts(symbols, days)
        # (symbol, day) runs with a sound bar
        with_sound = day_starts[np.add.reduceat(~verdict.held_back, day_starts) > 0]
        for day, symbol in zip(days[with_sound].tolist(), symbols[with_sound].tolist()):
            self.tally.companies_with_bars[day].add(companies[symbol])

    def _hand_on(self, bars: pd.DataFrame, verdict: Screening, companies: dict[str, str]) -> None:
        """One BucketUpdate per (symbol, bucket): its sound bars, the days it answers and its held-back bars."""
        symbols, days = bars["symbol"].to_numpy(), bars["day"].to_numpy()
        buckets = bucket_starts(days, self.timeframe)
        seconds = bars["timestamp"].astype("int64").to_numpy() // 1_000_000_000
        columns = {c: bars[c].to_numpy() for c in VALUE_COLUMNS}
        batch = bars_batch(seconds, columns)  # once per page; each bucket's block is encoded from its slice
        sound = ~verdict.held_back
        held = self._held_by_bucket(verdict)
        starts = _run_starts(symbols, buckets)
        for start, end in zip(starts, np.append(starts[1:], len(bars))):
            if sound[start:end].all():
                rows, rows_batch = slice(start, end), batch.slice(start, end - start)
            else:
                rows = np.arange(start, end)[sound[start:end]]
                rows_batch = batch.take(pa.array(rows))
            symbol, bucket = symbols[start], buckets[start]
            alpaca_id = companies[symbol]
            self.writer.add(BucketUpdate(bars_series(alpaca_id, self.timeframe), bucket, symbol, alpaca_id,
                                         seconds[rows], {c: a[rows] for c, a in columns.items()}, days[rows],
                                         set(days[start:end]), held.get((symbol, bucket), []), rows_batch))

    def _held_by_bucket(self, verdict: Screening) -> dict[tuple[str, str], list[dict]]:
        """(symbol, bucket) -> {"day", "t", "field", "reason"} per held-back bar."""
        held: dict[tuple[str, str], list[dict]] = collections.defaultdict(list)
        for p in verdict.problems:
            held[(p.symbol, bucket_starts(np.array([p.day]), self.timeframe)[0])].append(
                {"day": p.day, "t": p.timestamp, "field": p.field, "reason": p.reason})
        return held


def _run_starts(*keys: np.ndarray) -> np.ndarray:
    """Where a run of equal (key, ...) rows starts, in rows sorted by those keys."""
    change = np.zeros(len(keys[0]), dtype=bool)
    change[0] = True
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    return np.flatnonzero(change)
