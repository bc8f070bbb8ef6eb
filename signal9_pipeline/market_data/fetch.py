"""Fetching a bars run's pages: request groups, concurrent streams of pages, and whole symbols out of them.

The symbols of one request (one asset class, one `asof`) are split into a few large groups, each fetched as
its own stream of full 10,000-bar pages by a worker thread; the shared rate limiter keeps all of them together
under Alpaca's limit while they keep it busy. Pages are consumed as they arrive and each symbol's bars are
handed on as soon as its last page is in, so memory stays flat.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone

import pandas as pd

from signal9_pipeline.market_data.days import fetch_window
from signal9_pipeline.market_data.pages import bar_frames
from signal9_pipeline.market_data.timeframes import TIMEFRAMES
from signal9_pipeline.resources.alpaca import AlpacaResource

RECENT_SIP_MARGIN = timedelta(minutes=16)  # Alpaca's 15 minutes, and one for clocks that disagree
HANDED_ON_ROWS = 50_000  # whole symbols' bars are handed on in frames of at least this many, and at the end


def request_window(dates: list[date], *, crypto: bool) -> tuple[datetime, datetime] | None:
    """[start, end] (UTC) to ask for the bars of `dates`; None when nothing of it may be asked yet."""
    start, end = fetch_window(min(dates), max(dates), crypto=crypto)
    if not crypto:  # "the end parameter must be at least 15 minutes old to query SIP data without a subscription"
        # (Alpaca's market-data FAQ): just after New York midnight, the window of the day that just ended reaches
        # into the last 15 minutes. Its equity bars stop at 20:00 New York, so ending the window earlier loses none.
        end = min(end, datetime.now(timezone.utc) - RECENT_SIP_MARGIN)
        if end <= start:
            return None
    return start, end


def expected_bars(timeframe: str, symbols: int, days: int, *, crypto: bool) -> int:
    """At most how many bars `symbols` answer over `days` (crypto trades around the clock)."""
    per_day = TIMEFRAMES[timeframe].bars_per_day * (3 if crypto and TIMEFRAMES[timeframe].intraday else 1)
    return symbols * days * per_day


def request_groups(symbols: list[str], workers: int, cap: int, expected_bars: int) -> list[list[str]]:
    """As few groups as keep the workers busy and URLs short: only each group's last page comes back partial."""
    if not symbols:
        return []
    # Each group should span several pages, so the one partial page at its end costs little.
    count = max(-(-len(symbols) // cap), min(workers, -(-expected_bars // (8 * 10_000))), 1)
    return [symbols[i::count] for i in range(count) if symbols[i::count]]


def fetch_pages(alpaca: AlpacaResource, groups: list[list[str]], asset_class: str, timeframe: str,
                start: datetime, end: datetime, *, workers: int, adjustment: str,
                asof: str | None = None) -> Iterator[tuple[int, pd.DataFrame]]:
    """Pages from every group as they arrive, (group index, page); at most a few pages buffered."""
    pages: queue.Queue = queue.Queue(maxsize=2 * max(1, workers))
    done = object()
    stop = threading.Event()

    def stream(index: int, group: list[str]) -> None:
        try:
            for page in bar_frames(alpaca, group, timeframe, start, end, asset_class=asset_class,
                                   adjustment=adjustment, asof=asof):
                if stop.is_set():
                    return
                pages.put((index, page))
        except BaseException as exc:  # handed to the consumer, which raises it in the step
            pages.put((index, exc))
        finally:
            pages.put((index, done))

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="bars") as pool:
        for index, group in enumerate(groups):
            pool.submit(stream, index, group)
        remaining = len(groups)
        try:
            while remaining:
                index, page = pages.get()
                if page is done:
                    remaining -= 1
                elif isinstance(page, BaseException):
                    raise page
                else:
                    yield index, page
        finally:
            stop.set()
            while remaining:  # let blocked producers finish
                if pages.get()[1] is done:
                    remaining -= 1


def whole_symbols(pages: Iterable[tuple[int, pd.DataFrame]]) -> Iterator[pd.DataFrame]:
    """Frames of whole symbols' bars out of the groups' streams of pages, each ordered by symbol: a symbol's bars
    are handed on once a later symbol's page of its group arrives (or its stream ends)."""
    open_symbol: dict[int, tuple[str, list[pd.DataFrame]]] = {}  # per group: the symbol still receiving pages
    ready: list[pd.DataFrame] = []
    for index, page in pages:
        if page.empty:
            continue
        last = page["symbol"].iloc[-1]  # pages are ordered by symbol: all before the last one are complete
        held = open_symbol.pop(index, None)
        if held and held[0] != page["symbol"].iloc[0]:
            ready += held[1]
            held = None
        complete = page.loc[page["symbol"] != last]
        if held and not complete.empty:
            ready += held[1]
            held = None
        ready.append(complete)
        open_symbol[index] = (last, (held[1] if held else []) + [page.loc[page["symbol"] == last]])
        if sum(len(f) for f in ready) >= HANDED_ON_ROWS:
            yield pd.concat(ready)
            ready = []
    ready += [f for _, frames in open_symbol.values() for f in frames]
    if ready:
        yield pd.concat(ready)
