"""What a run tells the rest of Signal9 when Alpaca restated bars it had stored: `marketDataRestated` events.

One event per timeframe and up to SERIES_PER_EVENT series: each series (`{alpaca_id}#{timeframe}`, the company's
symbol it was asked under) with the days whose stored bars changed and the ledger entry that holds the old and new
values. A cache keyed by series and day drops exactly those. The event id is derived from the ledger entries, so a
revision is announced under one id however often its event is sent (consumers drop ids they have seen), and a
rerun that finds nothing changed has no entry and sends nothing.
"""

from __future__ import annotations

import hashlib
from itertools import groupby

from signal9_pipeline.market_data.ledger import Revision
from signal9_pipeline.resources.events import Event

DETAIL_TYPE = "marketDataRestated"
SERIES_PER_EVENT = 100  # EventBridge takes 256 KB per entry; a series with 60 days takes under 1 KB


def restatement_events(revisions: list[Revision], run_id: str) -> list[Event]:
    events = []
    ordered = sorted(revisions, key=lambda r: (r.timeframe, r.series, r.ledger_key))
    for timeframe, grouped in groupby(ordered, key=lambda r: r.timeframe):
        group = list(grouped)
        for first in range(0, len(group), SERIES_PER_EVENT):
            chunk = group[first:first + SERIES_PER_EVENT]
            detail = {"timeframe": timeframe, "runId": run_id, "series": [
                {"series": r.series, "alpacaId": r.alpaca_id, "symbol": r.symbol, "days": r.days,
                 "ledgerEntry": r.ledger_key, "seenAt": r.seen_at, **_counts(r)} for r in chunk]}
            digest = hashlib.sha256("\n".join(f"{r.series}|{r.ledger_key}" for r in chunk).encode()).hexdigest()[:32]
            events.append(Event(DETAIL_TYPE, detail, f"{DETAIL_TYPE}:{digest}"))
    return events


def _counts(revision: Revision) -> dict[str, int]:
    counts = revision.counts()
    return {"restated": counts["bars_restated"], "addedLate": counts["bars_added_late"],
            "withdrawn": counts["bars_withdrawn"], "restored": counts["bars_restored"],
            "refused": counts["bars_refused"]}
