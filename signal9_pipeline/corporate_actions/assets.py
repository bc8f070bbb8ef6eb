"""corporate_actions: Alpaca's corporate actions per process date, filed per company for adjusted reads.

Thin Dagster wiring around `corporate_actions.actions` (parsing, validation,
factors), `corporate_actions.store` (what is new, reference closes, the
comparison with Alpaca's own adjusted bars) and `corporate_actions.report`
(warnings, metadata, check results). A partition is a New York
process date (the date Alpaca filters `/v1/corporate-actions` by); a backfill
over a range is one run and one paged request series.
"""

from datetime import date

import dagster as dg

from signal9_pipeline import settings
from signal9_pipeline.catalog import MARKET_DATA_TABLE_COLUMNS, OWNERS, table_metadata
from signal9_pipeline.corporate_actions.report import CHECKS, check_results, run_metadata, run_warnings
from signal9_pipeline.corporate_actions.store import record
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.alpaca_errors import fail_without_step_retries
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.resources.events import EventsResource

ACTIONS_PARTITIONS = dg.DailyPartitionsDefinition(start_date=settings.get("SIGNAL9_BARS_START_DATE").isoformat(),
                                                  timezone="America/New_York")


@dg.asset(
    partitions_def=ACTIONS_PARTITIONS, backfill_policy=dg.BackfillPolicy.single_run(), pool="alpaca_api",
    deps=["assets_table"], kinds={"alpaca", "dynamodb"}, group_name="market_data", owners=OWNERS,
    metadata=table_metadata("SIGNAL9_MARKET_DATA_TABLE", MARKET_DATA_TABLE_COLUMNS),
    description="Alpaca's corporate actions (splits, dividends, symbol changes, mergers, ...) processed on each New "
                "York date, for the companies of the assets table, filed per company (the symbol resolved as of the "
                "action's date) and ex-date in the market-data table (series ALPACA_ID#actions); "
                "read_bars(adjustment=...) applies them to the raw bars; name changes date the renames in the assets "
                "table.",
    check_specs=[dg.AssetCheckSpec(name, asset="corporate_actions", description=text,
                                   blocking=False) for name, text in CHECKS.items()],
)
def corporate_actions(context: dg.AssetExecutionContext, alpaca: AlpacaResource, dynamodb: DynamoDBResource,
                      events: EventsResource):
    window = context.partition_key_range
    first, last = date.fromisoformat(window.start), date.fromisoformat(window.end)
    requests_before = alpaca.requests_sent
    with fail_without_step_retries():
        result = record(alpaca, dynamodb, events, first, last)
    if result.undelivered:
        raise dg.Failure(description="EventBridge did not accept corporateActionRecorded for "
                                     f"{sorted(result.undelivered)}; those actions were not stored, so a rerun "
                                     "publishes them again")
    for line in run_warnings(result):
        context.log.warning(line)
    yield dg.MaterializeResult(metadata=run_metadata(result, alpaca.requests_sent - requests_before),
                               check_results=check_results(result))


corporate_actions_job = dg.define_asset_job(
    "corporate_actions_job", selection=[corporate_actions],
    description="Corporate actions processed on a New York date (or a range, as one run), stored per company.")
daily_corporate_actions_schedule = dg.build_schedule_from_partitioned_job(
    corporate_actions_job, name="daily_corporate_actions_schedule",
    hour_of_day=0, minute_of_hour=30,  # 00:30 New York: after the 04:00 UTC sync in winter and summer
    description="Yesterday's New York process date, once the day has ended and the asset sync has run.",
    default_status=dg.DefaultScheduleStatus.RUNNING)

defs = dg.Definitions(assets=dg.with_source_code_references([corporate_actions]), jobs=[corporate_actions_job],
                      schedules=[daily_corporate_actions_schedule])
