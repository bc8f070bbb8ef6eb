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
from signal9_pipeline.market_data.buckets import record_manifests, stored_mismatches
from signal9_pipeline.market_data.ingest import IngestOptions, ingest
from signal9_pipeline.market_data.report import (
    CHECKS,
    BarsRun,
    check_results,
    log_warnings,
    partition_observations,
    per_partition,
    put_metrics,
    run_metadata,
)
from signal9_pipeline.market_data.restated import restatement_events
from signal9_pipeline.market_data.settle import settle_dates
from signal9_pipeline.market_data.tally import RunTally, completeness
from signal9_pipeline.market_data.timeframes import TIMEFRAMES
from signal9_pipeline.market_data.universe import Universe, UnknownSymbolError, bars_universe
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
    """The run's companies for the configured watchlist (`universe.bars_universe`)."""
    return bars_universe(timeframe, dates, config.intraday_watchlist, dynamodb, alpaca)


@dg.asset(
    partitions_def=BARS_PARTITIONS, backfill_policy=dg.BackfillPolicy.single_run(), pool="alpaca_api",
    deps=["assets_table"],  # a date's symbols are those the assets table shows listed on it
    kinds={"alpaca", "dynamodb"}, group_name="market_data", owners=OWNERS,
    metadata=table_metadata("SIGNAL9_MARKET_DATA_TABLE", MARKET_DATA_TABLE_COLUMNS),
    description="Every OHLC bar Alpaca returns per (trading date, timeframe): 1Day for every listed asset, intraday "
                "(04:00-20:00 New York for equities) for the watchlist; stored in DynamoDB buckets per symbol "
                "(a day of 1Min bars, a year of 1Day bars), as gzipped Arrow IPC blocks.",
    check_specs=[dg.AssetCheckSpec(name, asset="ohlc_bars", description=text, partitions_def=BARS_PARTITIONS)
                 for name, text in CHECKS.items()],
)
def ohlc_bars(context: dg.AssetExecutionContext, config: BarsConfig, alpaca: AlpacaResource, dynamodb: DynamoDBResource,
              metrics: MetricsResource, events: EventsResource):
    started, requests_before = time.monotonic(), alpaca.requests_sent
    run = BarsRun(*requested_partitions(context.partition_keys))
    for timeframe, dates in sorted(run.requested.items()):
        ingest_timeframe(context, config, alpaca, dynamodb, run, timeframe, sorted(dates))
    log_warnings(context.log, run)
    run.undelivered = announce_restatements(context, events, run.tally)
    run.requests_used = alpaca.requests_sent - requests_before
    run.mismatches, run.items_read_back = stored_mismatches(dynamodb, run.tally.written)
    put_metrics(metrics, run)
    for observation in partition_observations(run):
        context.log_event(observation)
    run.duration_s = time.monotonic() - started
    yield dg.MaterializeResult(metadata=run_metadata(run))
    yield from per_partition(context, check_results(run, config.min_completeness), run.partition_keys.values())


def requested_partitions(keys) -> tuple[dict[str, list[date]], dict[tuple[str, str], str]]:
    """The run's partitions: timeframe -> dates, and (timeframe, date) -> the partition key as Dagster spells it."""
    by_timeframe: dict[str, list[date]] = collections.defaultdict(list)
    partition_keys: dict[tuple[str, str], str] = {}
    for key in keys:
        multi_key = key if isinstance(key, dg.MultiPartitionKey) else BARS_PARTITIONS.get_partition_key_from_str(key)
        dims = multi_key.keys_by_dimension
        by_timeframe[dims["timeframe"]].append(date.fromisoformat(dims["date"]))
        partition_keys[(dims["timeframe"], dims["date"])] = str(key)
    return dict(by_timeframe), partition_keys


def ingest_timeframe(context: dg.AssetExecutionContext, config: BarsConfig, alpaca: AlpacaResource,
                     dynamodb: DynamoDBResource, run: BarsRun, timeframe: str, dates: list[date]) -> None:
    """Resolve the timeframe's companies on `dates`, ingest their bars, and count what the run's report needs."""
    tally, problems_before = run.tally, len(run.tally.problems)
    with fail_without_step_retries():
        try:
            symbols = universe(timeframe, dates, config, dynamodb, alpaca)
        except UnknownSymbolError as exc:
            raise dg.Failure(description=f"UnknownSymbolError: {exc}", allow_retries=False) from exc
        ingest(alpaca, dynamodb, timeframe, dates, symbols.listings, config.options(context.run.run_id), tally)
    run.problems_by_timeframe[timeframe] = tally.problems[problems_before:]
    run.without_bars_now.update({f"{day} {timeframe}": s
                                 for day, s in record_manifests(dynamodb, timeframe, dates, tally).items()})
    share, missing = completeness(symbols.listings, symbols.by_day, tally)
    run.count_completeness(share, missing)
    tally.companies_with_bars.clear()
    context.log.info(f"{timeframe}: {len(dates)} date(s), {len(symbols.listings)} company(ies), "
                     f"completeness {share:.1%}")


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
                          + "; ".join(e.event_id for e in undelivered[:10])
                          + "; the ledger holds the changes they announce")
    return len(undelivered)


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
                                    partition_key=dg.MultiPartitionKey({"date": day.isoformat(),
                                                                        "timeframe": timeframe}))


daily_bars_job = dg.define_asset_job(
    "daily_bars_job", selection=[ohlc_bars],
    description="OHLC bars of one or more (date, timeframe) partitions; a date range runs as one run.")

defs = dg.Definitions(assets=dg.with_source_code_references([ohlc_bars]), jobs=[daily_bars_job],
                      schedules=[daily_bars_schedule, settle_bars_schedule])
