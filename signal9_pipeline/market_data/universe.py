"""Which companies a bars run covers, which of them each date expects, and under which symbol each is asked.

For 1Day (and an intraday watchlist of "all"): every company listed at any moment of the date, by the assets
table's status history, delisted and renamed ones included, so that re-materializing a past date asks for the
same companies as the first time and a backtest sees no survivorship. For an intraday watchlist: the companies
its symbols name today (Alpaca's own convention, and `read_bars`' default), each over its whole history.
Companies are fetched per asset class (their endpoints and day boundaries differ), and asked for under the
symbol they hold as of a date (`asked_as_of`).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from signal9_pipeline.assets_sync.changes import was_listed_on
from signal9_pipeline.identity import Span, holder_on, observation_day, request_symbol, spans_of
from signal9_pipeline.market_data.days import ASSET_CLASSES
from signal9_pipeline.market_data.tally import RunTally
from signal9_pipeline.market_data.timeframes import TIMEFRAMES
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.tables.assets import LISTING_FIELDS, AssetsTable
from signal9_pipeline.timestamps import utc_stamp


class UnknownSymbolError(ValueError):
    """A symbol asked for bars that the assets table does not hold, or whose asset class has no bars endpoint here."""


@dataclass(frozen=True)
class Listing:
    """A company as a bars run needs it: its id, asset class and symbol history."""

    alpaca_id: str
    asset_class: str  # "" when the item has none (such a company is refused, see companies_named)
    spans: tuple[Span, ...]

    def request(self, last_day: date) -> tuple[str, str]:
        """(symbol, asof) under which Alpaca answers this company's bars of a window ending on `last_day`."""
        return request_symbol(list(self.spans), last_day.isoformat())

    @classmethod
    def of(cls, item: dict) -> Listing:
        spans = spans_of(item.get("symbols")) or [Span(item["symbol"])]
        return cls(item["alpaca_id"], item.get("asset_class", ""), tuple(spans))


@dataclass(frozen=True)
class Universe:
    """The companies of a run (by asset id) and which of them each date expects."""

    listings: dict[str, Listing]
    by_day: dict[date, set[str]]


def bars_universe(timeframe: str, dates: list[date], watchlist: str, dynamodb: DynamoDBResource,
                  alpaca: AlpacaResource | None = None) -> Universe:
    """The watchlist's companies for intraday timeframes; for 1Day (and a watchlist of "all"), every company listed
    on each date, by the assets table's status history, so re-materializing a past date asks for the same companies."""
    if TIMEFRAMES[timeframe].intraday and watchlist.strip().lower() != "all":
        return watchlist_universe(dynamodb, [s.strip() for s in watchlist.split(",") if s.strip()], dates, alpaca)
    return listed_universe(dynamodb, dates)


def listed_universe(dynamodb: DynamoDBResource, dates: list[date]) -> Universe:
    """Every company listed at any moment of each date, delisted ones included."""
    items = [i for i in AssetsTable(dynamodb).companies(LISTING_FIELDS) if i.get("asset_class") in ASSET_CLASSES]
    by_day: dict[date, set[str]] = {}
    previous: set[str] = set()
    for d in dates:
        window = _new_york_day(d)  # once per date, not per company: 12,062 x 60 conversions took 2 minutes
        listed = {i["alpaca_id"] for i in items if was_listed_on(i, d.isoformat(), *window)}
        # Dates whose listings agree share one set: a universe backfill holds a few sets of 12,000 ids, not
        # one per date (46 MB over 60 dates).
        by_day[d] = previous = previous if listed == previous else listed
    wanted = set().union(*by_day.values())
    return Universe({i["alpaca_id"]: Listing.of(i) for i in items if i["alpaca_id"] in wanted}, by_day)


def watchlist_universe(dynamodb: DynamoDBResource, symbols: list[str], dates: list[date],
                       alpaca: AlpacaResource | None = None) -> Universe:
    """The companies the watchlist's symbols name today, every date expecting all of them."""
    listings = companies_named(dynamodb, symbols, alpaca)
    return Universe(listings, {d: set(listings) for d in dates})


def companies_named(dynamodb: DynamoDBResource, symbols: list[str],
                    alpaca: AlpacaResource | None = None) -> dict[str, Listing]:
    """asset id -> Listing of the company each symbol names today: its holder in the assets table, else (a watchlist
    before the first sync) the asset Alpaca lists under it. Raises UnknownSymbolError naming what neither knows."""
    table, today = AssetsTable(dynamodb), observation_day()
    holders = table.holders(symbols)
    named = {s: holder_on(holders[s], today) for s in symbols if s in holders}
    ids = {s: h.alpaca_id for s, h in named.items() if h is not None}
    listings = {i["alpaca_id"]: Listing.of(i) for i in table.get_companies(set(ids.values()), LISTING_FIELDS)}
    if alpaca is not None:
        for symbol in sorted(set(symbols) - set(ids)):
            asset = alpaca.get_asset(symbol)
            if asset is not None and asset.get("symbol") == symbol and isinstance(asset.get("id"), str):
                ids[symbol] = asset["id"]
                listings[asset["id"]] = Listing(asset["id"], asset.get("class", ""), (Span(symbol),))
    missing = sorted(set(symbols) - set(ids))
    if missing:
        raise UnknownSymbolError(
            f"{len(missing)} symbol(s) are neither in the assets table {table.name!r} nor in Alpaca's asset list, "
            f"e.g. {', '.join(missing[:5])}; correct or remove them in SIGNAL9_INTRADAY_WATCHLIST")
    unsupported = sorted(s for s in symbols if listings[ids[s]].asset_class not in ASSET_CLASSES)
    if unsupported:
        raise UnknownSymbolError(
            f"no bars endpoint for the asset class of {', '.join(unsupported[:5])} "
            f"({listings[ids[unsupported[0]]].asset_class!r}); bars are fetched for {', '.join(ASSET_CLASSES)} only")
    return listings


def by_asset_class(listings: dict[str, Listing]) -> dict[str, list[Listing]]:
    """asset class -> its companies, for the asset classes the listings hold, equities first."""
    classes: dict[str, list[Listing]] = collections.defaultdict(list)
    for listing in listings.values():
        classes[listing.asset_class].append(listing)
    return {c: classes[c] for c in ASSET_CLASSES if c in classes}


def asked_as_of(listings: list[Listing], last_day: date, tally: RunTally, *,
                crypto: bool) -> dict[str | None, dict[str, str]]:
    """asof date -> {symbol: asset id}: under which symbol, as of which date, each company's bars are asked for.

    Alpaca maps a symbol to the company holding it as of `asof` and answers that company's whole history in the
    window, so one date serves every company that holds its symbol on the run's last date: a universe without
    changes is one group of full multi-day pages. A company whose symbol passed to another before that date is
    asked as of its own last day under it. Crypto has no `asof` (None). Two companies that would be asked under
    one symbol as of one date (a table that contradicts itself) are not asked for; `tally.unrequested` names them.
    """
    groups: dict[str | None, dict[str, str]] = collections.defaultdict(dict)
    for listing in sorted(listings, key=lambda x: x.alpaca_id):
        symbol, asof = listing.request(last_day)
        group = groups[None if crypto else asof]
        if symbol in group:
            tally.unrequested.append(f"{listing.alpaca_id}: {symbol} as of {asof} already names {group[symbol]}")
            continue
        group[symbol] = listing.alpaca_id
        tally.labels[listing.alpaca_id] = symbol
    return dict(sorted(groups.items(), key=lambda g: g[0] or ""))


def _new_york_day(day: date) -> tuple[str, str]:
    """The New York calendar day as [start, end) in the assets table's timestamp spelling."""
    start, end = (pd.Timestamp(d, tz="America/New_York").tz_convert("UTC") for d in (day, day + timedelta(days=1)))
    return utc_stamp(start), utc_stamp(end)
