"""ohlc_bars: every bar Alpaca returns for a trading date and timeframe, for the configured universe, in DynamoDB.

Thin Dagster wiring around `ingest` (the engine). A run covers one or more
(date, timeframe) partitions; a backfill over a date range runs as one run
(`BackfillPolicy.single_run()`), so one multi-symbol request spans many days.
Equities' intraday partitions hold pre-market, regular and post-market bars
(04:00-20:00 New York), as Alpaca serves them; `read_bars(session=...)`
selects. An impossible bar is held back with its reason (metadata, run log,
the checks) and the rest of its symbol-day is stored; nothing stored is ever
deleted by a later run.
"""

import collections
import time
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pandas as pd

from signal9_pipeline import settings
from signal9_pipeline.catalog import MARKET_DATA_TABLE_COLUMNS, OWNERS, table_metadata
from signal9_pipeline.market_data.days import TIMEFRAMES, BarProblem, is_session
from signal9_pipeline.market_data.ingest import (
    DAY_FIGURES,
    IngestOptions,
    RunTally,
    completeness,
    ingest,
    record_manifests,
    stored_mismatches,
)
from signal9_pipeline.market_data.restated import restatement_events
from signal9_pipeline.market_data.settle import settle_dates
from signal9_pipeline.market_data.universe import Universe, UnknownSymbolError, listed_universe, watchlist_universe
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.alpaca_errors import fail_without_step_retries
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.resources.events import EventsResource
from signal9_pipeline.resources.metrics import MetricsResource

BARS_PARTITIONS = dg.MultiPartitionsDefinition({
    "date": dg.DailyPartitionsDefinition(start_date=settings.get("SIGNAL9_BARS_START_DATE").isoformat(),
                                         timezone="America/New_York"),
    "timeframe": dg.StaticPartitionsDefinition(list(TIMEFRAMES)),
})
REPORTED_CHANGES = ("restated", "added_late", "withdrawn", "restored", "refused")
CHECKS = {
    "ohlc_consistent": "Every stored bar is possible: finite positive prices, high/low bounding open/close, "
                       "non-negative volume and trades; impossible bars are held back with their reasons.",
    "timestamps_valid": "Every bar is on its timeframe's grid, within 04:00-20:00 New York on an XNYS session "
                        "(equities), with no duplicate time.",
    "completeness": "The share of the partition's symbol-days with bars is at least min_completeness.",
    "stored_equals_fetched": "A read-back of every written item's checksum equals what was written.",
    "restatements_within_tolerance": "Bars Alpaca answered again with other values than stored (its revisions, kept in "
                                     "the ledger) changed no open, high, low or close, and no volume or vwap by more than 5%; "
                                     "a warning names them.",
}


class BarsConfig(dg.Config):
    intraday_watchlist: str = settings.get("SIGNAL9_INTRADAY_WATCHLIST")  # symbols, or "all"
    min_completeness: float = 0.9
    workers: int = settings.get("SIGNAL9_BARS_WORKERS")
    max_symbols_per_request: int = 2000
    adjustment: str = "raw"

    def options(self, run_id: str = "") -> IngestOptions:
        return IngestOptions(adjustment=self.adjustment, workers=self.workers,
                             max_symbols_per_request=self.max_symbols_per_request, run_id=run_id)


def universe(timeframe: str, dates: list[date], config: BarsConfig, dynamodb: DynamoDBResource,
             alpaca: AlpacaResource | None = None) -> Universe:
    """The watchlist's companies for intraday timeframes; for 1Day (and a watchlist of "all"), every company listed
    on each date, by the assets table's status history, so re-materializing a past date asks for the same companies."""
    if timeframe != "1Day" and config.intraday_watchlist.strip().lower() != "all":
        return watchlist_universe(dynamodb, [s.strip() for s in config.intraday_watchlist.split(",") if s.strip()], dates, alpaca)
    return listed_universe(dynamodb, dates)


@dg.asset(
    partitions_def=BARS_PARTITIONS, backfill_policy=dg.BackfillPolicy.single_run(), pool="alpaca_api",
    deps=["assets_table"],  # a date's symbols are those the assets table shows listed on it
    kinds={"alpaca", "dynamodb"}, group_name="market_data", owners=OWNERS,
    metadata=table_metadata("SIGNAL9_MARKET_DATA_TABLE", MARKET_DATA_TABLE_COLUMNS),
    description="Every OHLC bar Alpaca returns per (trading date, timeframe): 1Day for every listed asset, intraday "
                "(04:00-20:00 New York for equities) for the watchlist; stored in DynamoDB buckets per symbol "
                "(a day of 1Min bars, a year of 1Day bars), as gzipped Arrow IPC blocks.",
    check_specs=[dg.AssetCheckSpec(name, asset="ohlc_bars", description=text) for name, text in CHECKS.items()],
)
def ohlc_bars(context: dg.AssetExecutionContext, config: BarsConfig, alpaca: AlpacaResource, dynamodb: DynamoDBResource,
              metrics: MetricsResource, events: EventsResource):
    started, requests_before = time.monotonic(), alpaca.requests_sent
    by_timeframe: dict[str, list[date]] = collections.defaultdict(list)
    partition_keys: dict[tuple[str, str], str] = {}  # (timeframe, date) -> the partition key as Dagster spells it
    for key in context.partition_keys:
        dims = dg.MultiPartitionKey.from_str(key).keys_by_dimension if not isinstance(key, dg.MultiPartitionKey) else key.keys_by_dimension
        by_timeframe[dims["timeframe"]].append(date.fromisoformat(dims["date"]))
        partition_keys[(dims["timeframe"], dims["date"])] = str(key)
    tally, missing, share = RunTally(), 0, 1.0
    without_bars_now: dict[str, list[str]] = {}
    problems_by_timeframe: dict[str, list[BarProblem]] = {}
    for timeframe, dates in sorted(by_timeframe.items()):
        dates.sort()
        problems_before = len(tally.problems)
        with fail_without_step_retries():
            try:
                symbols = universe(timeframe, dates, config, dynamodb, alpaca)
            except UnknownSymbolError as exc:
                raise dg.Failure(description=f"UnknownSymbolError: {exc}", allow_retries=False) from exc
            ingest(alpaca, dynamodb, timeframe, dates, symbols.listings, config.options(context.run.run_id), tally)
        problems_by_timeframe[timeframe] = tally.problems[problems_before:]
        without_bars_now.update({f"{day} {timeframe}": s for day, s in record_manifests(dynamodb, timeframe, dates, tally).items()})
        tf_share, tf_missing = completeness(symbols.listings, symbols.by_day, tally)
        share, missing = min(share, tf_share), missing + tf_missing
        tally.companies_with_bars.clear()
        context.log.info(f"{timeframe}: {len(dates)} date(s), {len(symbols.listings)} company(ies), completeness {tf_share:.1%}")
    if tally.unrequested:
        context.log.warning(f"{len(tally.unrequested)} company(ies) not asked for: two companies under one symbol as of one "
                            "date in the assets table; " + "; ".join(tally.unrequested[:20]))
    if tally.problems:
        context.log.warning(f"{len(tally.problems)} impossible bar(s) held back, the rest of their symbol-days stored: "
                            + "; ".join(str(p) for p in tally.problems[:20]))
    if tally.outside_window:
        context.log.warning(f"{tally.outside_window} bar(s) Alpaca answered for days outside the partitions asked for; "
                            "not stored (they are those partitions' bars)")
    if without_bars_now:
        context.log.warning("stored symbol-days that Alpaca now answers without bars (kept): "
                            + "; ".join(f"{k}: {', '.join(v[:10])}" for k, v in sorted(without_bars_now.items())[:20]))
    undelivered = announce_restatements(context, events, tally)
    requests_used = alpaca.requests_sent - requests_before
    mismatches, read_back = stored_mismatches(dynamodb, tally.written)
    bars_per_request = tally.bars / requests_used if requests_used else 0.0
    totals = tally.totals()
    metrics.put("BarsWritten", tally.bars)
    metrics.put("BarsPerRequest", bars_per_request)
    metrics.put("BarsInvalid", len(tally.problems))
    stamps = [p for p in tally.problems if p.field == "t"]
    values = [p for p in tally.problems if p.field != "t"]
    for observation in partition_observations(tally, partition_keys, problems_by_timeframe):
        context.log_event(observation)
    yield dg.MaterializeResult(
        metadata={
            "bars_written": dg.MetadataValue.int(tally.bars),
            **{f"bars_{name}": dg.MetadataValue.int(totals[name]) for name in DAY_FIGURES if name != "bars"},
            "bars_kept_from_earlier": dg.MetadataValue.int(tally.kept_from_earlier),
            "bars_vwap_outside_range": dg.MetadataValue.int(tally.vwap_outside_range),
            "bars_outside_window": dg.MetadataValue.int(tally.outside_window),
            "items_written": dg.MetadataValue.int(tally.items),
            "requests_used": dg.MetadataValue.int(requests_used),
            "bars_per_request": dg.MetadataValue.float(round(bars_per_request, 1)),
            "symbols_with_no_bars": dg.MetadataValue.int(missing),
            "companies_not_asked": dg.MetadataValue.int(len(tally.unrequested)),
            "stored_symbol_days_without_bars_now": dg.MetadataValue.int(sum(map(len, without_bars_now.values()))),
            "write_requests": dg.MetadataValue.int(tally.write_requests),
            "write_conflicts": dg.MetadataValue.int(tally.write_conflicts),
            "largest_block_bytes": dg.MetadataValue.int(tally.largest_block_bytes),
            **revision_figures(tally.revised.values(), tally.largest_change.values()),
            "restatement_events_undelivered": dg.MetadataValue.int(undelivered),
            "duration_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
            "by_date": dg.MetadataValue.md(_by_date_table(tally, by_timeframe)),
            **({"held_back": dg.MetadataValue.text("\n".join(str(p) for p in tally.problems[:200]))} if tally.problems else {}),
        },
        check_results=[
            dg.AssetCheckResult(check_name="ohlc_consistent", passed=not values, description=_first(values),
                                metadata={"invalid_bars": dg.MetadataValue.int(len(values)),
                                          "vwap_outside_range": dg.MetadataValue.int(tally.vwap_outside_range)}),
            dg.AssetCheckResult(check_name="timestamps_valid", passed=not stamps, description=_first(stamps),
                                metadata={"invalid_timestamps": dg.MetadataValue.int(len(stamps))}),
            dg.AssetCheckResult(check_name="completeness", passed=share >= config.min_completeness,
                                metadata={"share_with_bars": dg.MetadataValue.float(round(share, 4)),
                                          "missing_symbol_days": dg.MetadataValue.int(missing),
                                          "threshold": dg.MetadataValue.float(config.min_completeness)}),
            dg.AssetCheckResult(check_name="stored_equals_fetched", passed=not mismatches,
                                metadata={"items_checked": dg.MetadataValue.int(read_back),
                                          "mismatches": dg.MetadataValue.int(len(mismatches))}),
            dg.AssetCheckResult(check_name="restatements_within_tolerance", passed=not tally.beyond_tolerance_count,
                                severity=dg.AssetCheckSeverity.WARN,
                                description="; ".join(tally.beyond_tolerance[:5]) or None,
                                metadata={"bars_beyond_tolerance": dg.MetadataValue.int(tally.beyond_tolerance_count),
                                          **({"beyond_tolerance": dg.MetadataValue.text("\n".join(tally.beyond_tolerance))}
                                             if tally.beyond_tolerance else {})}),
        ],
    )


def partition_observations(tally: RunTally, partition_keys: dict[tuple[str, str], str],
                           problems_by_timeframe: dict[str, list[BarProblem]]) -> list[dg.AssetObservation]:
    """One observation per partition of the run with that partition's own figures and held-back bars.

    Dagster records a single-run backfill as one materialization per partition, each carrying the run's
    metadata (it has no per-partition metadata for one run: dagster-io/dagster issues 21072 and 18123), so a
    partition's own figures are recorded beside it, as an observation of that partition, however many
    partitions the run covers.
    """
    held: dict[tuple[str, str], list[BarProblem]] = collections.defaultdict(list)
    for timeframe, problems in problems_by_timeframe.items():
        for problem in problems:
            held[(timeframe, problem.day)].append(problem)
    observations = []
    for (timeframe, day), key in sorted(partition_keys.items(), key=lambda item: (item[0][1], item[0][0])):
        figures = tally.by_day.get((timeframe, day), {})
        reasons = held.get((timeframe, day), [])
        observations.append(dg.AssetObservation(asset_key="ohlc_bars", partition=key, metadata={
            **{f"bars_{name}" if name != "bars" else "bars_written": dg.MetadataValue.int(figures.get(name, 0))
               for name in DAY_FIGURES},
            "xnys_session": dg.MetadataValue.bool(is_session(date.fromisoformat(day))),
            **revision_figures([tally.revised.get((timeframe, day), collections.Counter())],
                               [tally.largest_change.get((timeframe, day), 0.0)]),
            **({"held_back": dg.MetadataValue.text("\n".join(str(p) for p in reasons[:200]))} if reasons else {}),
        }))
    return observations


def revision_figures(counts, largest) -> dict[str, dg.MetadataValue]:
    """What re-fetches changed in bars stored before (the ledger's entries): per partition, or summed over a run."""
    total: collections.Counter = collections.Counter()
    for c in counts:
        total.update(c)
    return {**{f"bars_{name}": dg.MetadataValue.int(int(total[name])) for name in REPORTED_CHANGES},
            "largest_relative_change": dg.MetadataValue.float(round(max(largest, default=0.0), 6))}


def announce_restatements(context: dg.AssetExecutionContext, events: EventsResource, tally: RunTally) -> int:
    """Send the run's `marketDataRestated` events, after every bucket is written; how many were not delivered."""
    if tally.revisions:
        context.log.info(f"{len(tally.revisions)} bucket(s) restated by Alpaca since stored; ledger entries written")
    if tally.beyond_tolerance_count:
        context.log.warning(f"{tally.beyond_tolerance_count} restated bar(s) beyond tolerance (a price, or volume or "
                            "vwap by over 5%): " + "; ".join(tally.beyond_tolerance[:20]))
    undelivered = events.publish(restatement_events(tally.revisions, context.run.run_id)) if tally.revisions else []
    if undelivered:
        context.log.error(f"{len(undelivered)} marketDataRestated event(s) not delivered after retries: "
                          + "; ".join(e.event_id for e in undelivered[:10]) + "; the ledger holds the changes they announce")
    return len(undelivered)


def _by_date_table(tally: RunTally, requested: dict[str, list[date]], limit: int = 60) -> str:
    """The run's first `limit` partitions (date, timeframe): XNYS session, bars by session, held back; a summary
    for the materialization's page (each partition's own figures are its observation)."""
    rows = ["| date | timeframe | XNYS | " + " | ".join(DAY_FIGURES) + " |", "|" + "---|" * (3 + len(DAY_FIGURES))]
    keys = sorted({(d.isoformat(), tf) for tf, dates in requested.items() for d in dates})
    for day, timeframe in keys[:limit]:
        figures = tally.by_day.get((timeframe, day), {})
        session = "session" if is_session(date.fromisoformat(day)) else "no session (crypto only)"
        rows.append(f"| {day} | {timeframe} | {session} | " + " | ".join(f"{figures.get(k, 0):,}" for k in DAY_FIGURES) + " |")
    if len(keys) > limit:
        rows.append(f"| ... {len(keys) - limit} more, each in its partition's observation | | | "
                    + " | " * (len(DAY_FIGURES) - 1) + " |")
    return "\n".join(rows)


def _first(problems: list[BarProblem]) -> str | None:
    return "; ".join(str(p) for p in problems[:5]) or None


@dg.schedule(cron_schedule="0 5 * * *", execution_timezone="UTC", job_name="daily_bars_job",
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="05:00 UTC, after the 04:00 asset sync: yesterday's New York date in every timeframe.")
def daily_bars_schedule(context: dg.ScheduleEvaluationContext):
    """After the 04:00 asset sync: yesterday's New York date, every timeframe (crypto trades on weekends too)."""
    scheduled = context.scheduled_execution_time or datetime.now(timezone.utc)
    day = (pd.Timestamp(scheduled).tz_convert("America/New_York").date() - timedelta(days=1)).isoformat()
    for timeframe in TIMEFRAMES:
        yield dg.RunRequest(run_key=f"{day}|{timeframe}",
                            partition_key=dg.MultiPartitionKey({"date": day, "timeframe": timeframe}))


@dg.schedule(cron_schedule="30 12 * * 1-5", execution_timezone="UTC", job_name="daily_bars_job",
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="12:30 UTC on XNYS sessions, before the open: the settle pass. Each date's partitions are "
                         "fetched again on the morning of the sessions SIGNAL9_SETTLE_SESSIONS after it (default the "
                         "next and the fifth), so Alpaca's late revisions reach the table and its ledger.")
def settle_bars_schedule(context: dg.ScheduleEvaluationContext):
    """The dates whose k-th session after them is today's (`settle.settle_dates`), every timeframe, one run each."""
    scheduled = context.scheduled_execution_time or datetime.now(timezone.utc)
    session = pd.Timestamp(scheduled).tz_convert("America/New_York").date()
    offsets = [int(k) for k in settings.get("SIGNAL9_SETTLE_SESSIONS").split(",") if k.strip()]
    for k, dates in settle_dates(session, offsets).items():
        for day in dates:
            for timeframe in TIMEFRAMES:
                yield dg.RunRequest(run_key=f"settle|{day}|{timeframe}|{k}", tags={"signal9/settle_sessions": str(k)},
                                    partition_key=dg.MultiPartitionKey({"date": day.isoformat(), "timeframe": timeframe}))


daily_bars_job = dg.define_asset_job(
    "daily_bars_job", selection=[ohlc_bars],
    description="OHLC bars of one or more (date, timeframe) partitions; a date range runs as one run.")

defs = dg.Definitions(assets=dg.with_source_code_references([ohlc_bars]), jobs=[daily_bars_job],
                      schedules=[daily_bars_schedule, settle_bars_schedule])
