"""`python -m signal9_pipeline.migrate`: move what the symbol-keyed release stored to the company-keyed layout.

The release before this one kept one assets item per symbol (`ASSET#{symbol}`, whose Alpaca id a reused ticker
overwrote) and filed bars, corporate actions and partition manifests by symbol (`{symbol}#{timeframe}`,
`{symbol}#actions`, manifests listing symbols). This command, run once with the pipeline's settings in the
environment (the tables, and Alpaca's for the asset list), rebuilds:

1. Companies (`ID#{alpaca_id}`) from the symbol items, by their Alpaca id: a rename's two items become one company
   whose symbol history splits where the rename was recorded. A symbol "listed again" under an id that Alpaca
   lists inactive under the same symbol with another id is a reused ticker the old release merged: the earlier
   company gets its id, fields (from Alpaca's list) and history up to that listing back, and the newcomer starts
   there as the new company it is, pending pollenation (the old release never pollenated it).
2. The symbol items, rewritten as the views of those companies (holders included).
3. Bars: every symbol-keyed bucket is copied into the series of the company that held the symbol on each bar's
   day (split where one bucket holds two companies), read back, and only then deleted.
4. Corporate actions (by their effective date) and manifests (symbols to asset ids) likewise.

Idempotent: a rerun finds nothing symbol-keyed left, and a run cut short resumes (a bucket already copied is
compared, not written twice). Nothing is deleted before its copy is read back; what cannot be placed (a symbol
no company held) stays where it is and is reported. `--dry-run` reports without writing.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import numpy as np
import pandas as pd

from signal9_pipeline.assets_sync.changes import HISTORY_LIMIT, NEW, content_hash, plan_symbol_items
from signal9_pipeline.assets_sync.validation import validate_assets
from signal9_pipeline.identity import (
    FROM_MIGRATION,
    Holder,
    Span,
    holder_on,
    holders_by_symbol,
    observation_day,
    spans_item,
    spans_of,
)
from signal9_pipeline.market_data.codec import decode, encode_columns
from signal9_pipeline.market_data.days import CRYPTO, trading_days
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.tables.assets import POLLENATION_PENDING, AssetsTable, company_key
from signal9_pipeline.tables.market_data import (
    ACTIONS,
    MANIFEST_PREFIX,
    MarketDataTable,
    actions_series,
    bars_series,
    pack_ids,
    unpack_ids,
)
from signal9_pipeline.timestamps import utc_stamp

ALPACA_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "vwap", "trade_count")
RENAME_NOTES = ("renamed to ", "renamed from ")


class MigrationError(RuntimeError):
    """The migration cannot go on safely; the message names the item and the fix. Nothing was deleted for it."""


@dataclass
class Report:
    companies: int = 0
    reused_tickers: list[str] = field(default_factory=list)
    symbol_items: int = 0
    buckets_moved: int = 0
    buckets_split: int = 0
    actions_moved: int = 0
    manifests: int = 0
    left: list[str] = field(default_factory=list)  # what could not be placed, and stays where it is

    def lines(self) -> list[str]:
        return [f"companies written: {self.companies}",
                f"reused tickers split: {len(self.reused_tickers)} {', '.join(self.reused_tickers)}".rstrip(),
                f"symbol items written: {self.symbol_items}",
                f"bar buckets moved: {self.buckets_moved} ({self.buckets_split} split between companies)",
                f"corporate actions moved: {self.actions_moved}", f"manifests rewritten: {self.manifests}",
                *(f"left in place: {line}" for line in self.left)]


def migrate(dynamodb: DynamoDBResource, alpaca_assets: list[dict] | None, *, dry_run: bool = False) -> Report:
    report = Report()
    assets = AssetsTable(dynamodb)
    legacy = [i for i in assets.views() if "view_of" not in i]  # symbol items the old release wrote
    companies = {c["alpaca_id"]: c for c in assets.companies()}
    if legacy:
        rebuilt = companies_of(legacy, alpaca_assets or [], utc_stamp(), report)
        fresh = [c for i, c in rebuilt.items() if i not in companies]
        report.companies = len(fresh)
        companies.update({c["alpaca_id"]: c for c in fresh})
        if not dry_run:
            assets.put_new_companies(fresh)
    plan = plan_symbol_items(companies.values(), assets.view_sources())
    report.symbol_items = len(plan.views)
    if not dry_run:
        assets.put(plan.views)
    holders = holders_by_symbol((i, spans_of(c.get("symbols"))) for i, c in companies.items())
    move_market_data(MarketDataTable(dynamodb), holders, report, dry_run)
    return report


# --- companies ------------------------------------------------------------------------------------
def companies_of(legacy: list[dict], alpaca_assets: list[dict], now: str, report: Report) -> dict[str, dict]:
    """asset id -> company item, from the symbol items of the old release (and Alpaca's list, for reused tickers)."""
    by_id: dict[str, list[dict]] = collections.defaultdict(list)
    for item in legacy:
        if isinstance(item.get("alpaca_id"), str):
            by_id[item["alpaca_id"]].append(item)
    inactive = collections.defaultdict(list)  # symbol -> Alpaca's delisted assets under it
    for asset in alpaca_assets:
        if isinstance(asset, dict) and asset.get("status") == "inactive":
            inactive[asset.get("symbol")].append(asset)
    companies = {}
    for alpaca_id, items in by_id.items():
        company = _company(_in_order(items))
        earlier = _earlier_holder(company, [a for a in inactive.get(company["symbol"], []) if a.get("id") not in by_id])
        if earlier is not None:
            old, company = _split(company, earlier, now)
            companies[old["alpaca_id"]] = old
            report.reused_tickers.append(f"{company['symbol']} ({old['alpaca_id']} until "
                                         f"{company['symbols'][0]['start']})")
        companies[alpaca_id] = company
    return companies


def _in_order(items: list[dict]) -> list[dict]:
    """A company's symbol items in the order it held them (renamed_from links; the first one first)."""
    by_symbol = {i["symbol"]: i for i in items}
    firsts = [i for i in items if i.get("renamed_from") not in by_symbol] or items[:1]
    ordered: list[dict] = []
    item: dict | None = min(firsts, key=lambda i: i.get("created_at", ""))
    while item is not None and item not in ordered:
        ordered.append(item)
        item = by_symbol.get(item.get("renamed_to"))
    return ordered + [i for i in items if i not in ordered]


def _company(items: list[dict]) -> dict:
    """One company from its symbol items in order: the last one's fields, every one's listing history and outbox."""
    current = items[-1]
    spans, start = [], None
    for item, following in zip(items, [*items[1:], None]):
        end = _renamed_on(following) if following is not None else None
        spans.append(Span(item["symbol"], start, end, FROM_MIGRATION))
        start = end
    history = sorted({(h.get("at", ""), h.get("status"), h.get("note", "")): h for i in items
                      for h in i.get("status_history") or []
                      if not str(h.get("note", "")).startswith(RENAME_NOTES)}.values(),
                     key=lambda h: h.get("at", ""))
    company = {k: v for k, v in current.items() if k not in ("renamed_from", "renamed_to")}
    company.update(asset_id=company_key(current["alpaca_id"]), symbols=spans_item(spans), status_history=history,
                   # stored symbol items carry both stamps (the sync writes them)
                   created_at=min(i.get("created_at", cast(str, current.get("created_at"))) for i in items),
                   first_seen_at=min(i.get("first_seen_at", cast(str, current.get("first_seen_at"))) for i in items))
    events = [e for i in items for e in i.get("pending_events") or []]
    if events:
        company.update(pending_events=events, events_pending="1")
    return company


def _renamed_on(item: dict) -> str | None:
    """The observation day of the sync that recorded the rename into this item's symbol."""
    recorded = [h["at"] for h in item.get("status_history") or [] if str(h.get("note", "")).startswith("renamed from ")]
    return observation_day(_moment(recorded[0])) if recorded else None


def _moment(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _earlier_holder(company: dict, candidates: list[dict]) -> tuple[dict, dict] | None:
    """(Alpaca's row of the company the old release overwrote, the "listed again" entry) for a reused ticker."""
    history = company.get("status_history") or []
    relisted = [h for previous, h in zip(history, history[1:])
                if previous.get("status") == "inactive" and h.get("status") == "active"
                and h.get("note") == "listed again"]
    if not relisted or len(candidates) != 1:
        return None
    return candidates[0], relisted[-1]


def _split(company: dict, earlier: tuple[dict, dict], now: str) -> tuple[dict, dict]:
    """The earlier holder given back what was its own, and the newcomer from its listing on."""
    row, relisted = earlier
    day = observation_day(_moment(relisted["at"]))
    history = company["status_history"]
    cut = history.index(relisted)
    valid = validate_assets([row]).valid.to_dict("records")
    fields = cast(dict[str, Any], valid[0]) if valid else {"alpaca_id": row["id"], "symbol": company["symbol"],
                                                           "status": "inactive", "tradable": False}
    old = {**{k: v for k, v in company.items() if k not in ("pending_events", "events_pending", "pollenation_pending")},
           **fields, "asset_id": company_key(fields["alpaca_id"]), "status_history": history[:cut][-HISTORY_LIMIT:],
           "symbols": spans_item([Span(company["symbol"], None, day, FROM_MIGRATION)]), "pollenation_status": "done",
           "content_hash": content_hash(fields), "updated_at": now}
    new = {**company, "status_history": [{**relisted, "note": "listed"}, *history[cut + 1:]],
           "symbols": spans_item([Span(company["symbol"], day, None, FROM_MIGRATION)]),
           "created_at": relisted["at"], "first_seen_at": relisted["at"], "pollenation_status": POLLENATION_PENDING,
           "pollenation_pending": "1", "pollenation_pending_since": now, "pollenation_reason": NEW}
    return old, new


# --- market data ----------------------------------------------------------------------------------
def move_market_data(table: MarketDataTable, holders: dict[str, list[Holder]], report: Report, dry_run: bool) -> None:
    legacy = collections.defaultdict(list)
    for series, day in table.keys():
        owner, _, kind = series.rpartition("#")
        if series.startswith(MANIFEST_PREFIX) or not ALPACA_ID.fullmatch(owner):
            legacy[series].append(day)
    for series, days in sorted(legacy.items()):
        for first in range(0, len(days), 50):
            items = table.get([(series, d) for d in days[first:first + 50]]).values()
            for item in items:
                if series.startswith(MANIFEST_PREFIX):
                    _manifest(table, item, holders, report, dry_run)
                elif series.endswith(f"#{ACTIONS}"):
                    _action(table, item, holders, report, dry_run)
                else:
                    _bucket(table, item, holders, report, dry_run)


def _owner(holders: dict[str, list[Holder]], symbol: str, day: str) -> str | None:
    those = holders.get(symbol, [])
    holder = holder_on(those, day) or (those[0] if those else None)  # before its first holder: the bars are its
    return holder.alpaca_id if holder else None


def _bucket(table: MarketDataTable, item: dict, holders, report: Report, dry_run: bool) -> None:
    symbol, _, timeframe = item["series"].rpartition("#")
    frame, checksum = decode(bytes(item["bars"]))
    if checksum != item.get("checksum"):
        raise MigrationError(f"bucket {item['series']} {item['day']} fails its checksum; re-materialize the partitions "
                             "it covers with the old release, or delete it, then run the migration again")
    days = trading_days(frame["timestamp"], crypto=item.get("asset_class") == CRYPTO)
    owners = np.array([_owner(holders, symbol, d) for d in days], dtype=object)
    if any(o is None for o in owners):
        report.left.append(f"bars {item['series']} {item['day']}: no company ever held {symbol}")
        return
    targets = {}
    for owner in sorted(set(owners)):
        rows = owners == owner
        seconds = frame["timestamp"].astype("int64").to_numpy()[rows] // 1_000_000_000
        block, sum_ = ((bytes(item["bars"]), checksum) if rows.all() else
                       encode_columns(seconds, {c: frame[c].to_numpy()[rows] for c in VALUE_COLUMNS}))
        held = [h for h in item.get("held_back") or [] if _owner(holders, symbol, h.get("day", "")) == owner]
        targets[(bars_series(owner, timeframe), item["day"])] = {
            **{k: v for k, v in item.items()
               if k not in ("series", "bars", "checksum", "bar_count", "version", "held_back")},
            "series": bars_series(owner, timeframe), "alpaca_id": owner, "symbol": symbol, "bars": block,
            "checksum": sum_, "bar_count": int(rows.sum()), "held_back": held, "version": 1,
            "first_ts": utc_stamp(int(seconds[0])), "last_ts": utc_stamp(int(seconds[-1]))}
    report.buckets_moved += 1
    report.buckets_split += len(targets) > 1
    if not dry_run:
        _place(table, item, targets, merge=True)


def _action(table: MarketDataTable, item: dict, holders, report: Report, dry_run: bool) -> None:
    symbol = item["series"].rpartition("#")[0]
    owner = _owner(holders, symbol, item["day"].split("#")[0])
    if owner is None:
        report.left.append(f"action {item['series']} {item['day']}: no company ever held {symbol}")
        return
    target = {**item, "series": actions_series(owner), "alpaca_id": owner}
    report.actions_moved += 1
    if not dry_run:
        _place(table, item, {(target["series"], target["day"]): target}, merge=False)


def _manifest(table: MarketDataTable, item: dict, holders, report: Report, dry_run: bool) -> None:
    if "symbols" not in item:
        return
    ids = {s: _owner(holders, s, item["day"]) for s in item["symbols"]}
    unplaced = sorted(s for s, i in ids.items() if i is None)
    rewritten = {"series": item["series"], "day": item["day"],
                 "asset_ids": pack_ids(unpack_ids(item.get("asset_ids")) | {i for i in ids.values() if i})}
    if unplaced:
        rewritten["symbols"] = unplaced
        report.left.append(f"manifest {item['series']} {item['day']}: {', '.join(unplaced[:5])} held by no company")
    report.manifests += 1
    if not dry_run:
        table.put([rewritten])


def _place(table: MarketDataTable, legacy: dict, targets: dict[tuple, dict], *, merge: bool) -> None:
    """Write each target (merged into what is stored there), read them back, then delete the legacy item."""
    stored = table.get(targets)
    for key, target in targets.items():
        there = stored.get(key)
        if there is not None and merge and there.get("checksum") != target["checksum"]:
            target = _merged(there, target)
        elif there is not None and not merge:
            continue
        if there is None or there.get("checksum") != target.get("checksum"):
            condition = ("attribute_not_exists(#v)", None) if there is None or "version" not in there else \
                ("#v = :v", {":v": there["version"]})
            if not table.put_if(target, condition[0], {"#v": "version"}, condition[1]):
                raise MigrationError(f"{key} changed while it was migrated (a run writing it); run the migration again")
    back = table.get(targets, projection=["series", "day", "checksum"])
    if set(back) != set(targets):
        raise MigrationError(f"the copies of {legacy['series']} {legacy['day']} did not read back; "
                             "it is kept, run again")
    table.delete([(legacy["series"], legacy["day"])])


def _merged(stored: dict, moved: dict) -> dict:
    """A bucket the new layout already holds, plus the moved bars of times it lacks (the stored ones are newer)."""
    have, add = decode(bytes(stored["bars"]))[0], decode(bytes(moved["bars"]))[0]
    add = add.loc[~add["timestamp"].isin(have["timestamp"])]
    both = (have if add.empty else pd.concat([have, add])).sort_values("timestamp")
    seconds = both["timestamp"].astype("int64").to_numpy() // 1_000_000_000
    block, sum_ = encode_columns(seconds, {c: both[c].to_numpy() for c in VALUE_COLUMNS})
    return {**stored, "bars": block, "checksum": sum_, "bar_count": len(both),
            "version": int(stored.get("version", 0)) + 1,
            "first_ts": utc_stamp(int(seconds[0])), "last_ts": utc_stamp(int(seconds[-1])),
            "held_back": list(stored.get("held_back") or []) + list(moved.get("held_back") or [])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m signal9_pipeline.migrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="report what would move, write nothing")
    parser.add_argument("--without-alpaca", action="store_true",
                        help="do not read Alpaca's asset list: a reused ticker the old release merged stays merged")
    args = parser.parse_args(argv)
    alpaca_assets = None
    if not args.without_alpaca:
        from signal9_pipeline.resources.alpaca import AlpacaResource

        alpaca_assets = AlpacaResource.from_settings().list_assets()
    try:
        report = migrate(DynamoDBResource.from_settings(), alpaca_assets, dry_run=args.dry_run)
    except MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(("dry run: " if args.dry_run else "") + line for line in report.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

