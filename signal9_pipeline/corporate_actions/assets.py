"""corporate_actions: Alpaca's corporate actions per process date, filed per company for adjusted reads.

Thin Dagster wiring around `corporate_actions.actions` (parsing, validation,
factors) and `corporate_actions.store` (what is new, reference closes, the
comparison with Alpaca's own adjusted bars). A partition is a New York
process date (the date Alpaca filters `/v1/corporate-actions` by); a backfill
over a range is one run and one paged request series.
"""

import collections
from datetime import date

import dagster as dg

from signal9_pipeline import settings
from signal9_pipeline.catalog import MARKET_DATA_TABLE_COLUMNS, OWNERS, table_metadata
from signal9_pipeline.corporate_actions.actions import KNOWN_GROUPS, Action
from signal9_pipeline.corporate_actions.store import Recorded, record
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.alpaca_errors import fail_without_step_retries
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.resources.events import EventsResource

ACTIONS_PARTITIONS = dg.DailyPartitionsDefinition(start_date=settings.get("SIGNAL9_BARS_START_DATE").isoformat(),
                                                  timezone="America/New_York")
CHECKS = {
    "ratios_valid": "Every split and dividend has a positive, finite ratio or amount; failing ones are held back.",
    "dates_valid": "Every date parses and is ordered (a dividend is not paid before its ex- or record date); "
                   "failing actions are held back.",
    "no_duplicate_actions": "No event arrives twice under different ids (a repeat is stored but applied once).",
    "names_agree_with_renames": "Alpaca's name changes match the renames the asset sync recorded: one company (same "
                                "alpaca_id), and an effective date the sync's observations allow (both dates named).",
    "agrees_with_alpaca_adjusted": "Alpaca's own adjusted daily close before each new action matches ours "
                                   "(a disagreement is reported, never copied).",
}
WARN_ONLY = ("no_duplicate_actions", "names_agree_with_renames", "agrees_with_alpaca_adjusted")


@dg.asset(
    partitions_def=ACTIONS_PARTITIONS, backfill_policy=dg.BackfillPolicy.single_run(), pool="alpaca_api",
    deps=["assets_table"], kinds={"alpaca", "dynamodb"}, group_name="market_data", owners=OWNERS,
    metadata=table_metadata("SIGNAL9_MARKET_DATA_TABLE", MARKET_DATA_TABLE_COLUMNS),
    description="Alpaca's corporate actions (splits, dividends, symbol changes, mergers, ...) processed on each New "
                "York date, for the companies of the assets table, filed per company (the symbol resolved as of the "
                "action's date) and ex-date in the market-data table (series ALPACA_ID#actions); read_bars(adjustment=...) "
                "applies them to the raw bars; name changes date the renames in the assets table.",
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
        raise dg.Failure(description=f"EventBridge did not accept corporateActionRecorded for {sorted(result.undelivered)}; "
                                     "those actions were not stored, so a rerun publishes them again")
    for line in result.warnings:
        context.log.warning(line)
    by_type = collections.Counter(a.type for a in result.actions)
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(result.actions)),
            **{group: dg.MetadataValue.int(by_type.get(group[:-1], 0)) for group in KNOWN_GROUPS},
            "unknown_types": dg.MetadataValue.int(sum(not a.known for a in result.actions)),
            "new": dg.MetadataValue.int(result.new),
            "changed": dg.MetadataValue.int(result.changed),
            "unchanged": dg.MetadataValue.int(result.unchanged),
            "held_back": dg.MetadataValue.int(sum(bool(a.held_back) for a in result.actions)),
            "outside_assets_table": dg.MetadataValue.int(result.outside),
            "renames_dated": dg.MetadataValue.int(result.renames_dated),
            "events_published": dg.MetadataValue.int(result.published),
            "requests_used": dg.MetadataValue.int(alpaca.requests_sent - requests_before),
            "dividends_without_reference_close": dg.MetadataValue.int(result.without_close),
            **({"held_back_actions": dg.MetadataValue.md(_table([a for a in result.actions if a.held_back]))}
               if any(a.held_back for a in result.actions) else {}),
        },
        check_results=_checks(result),
    )


def _checks(result: Recorded) -> list[dg.AssetCheckResult]:
    ratio = [a for a in result.actions if any(what == "ratio" for what, _ in a.problems)]
    dates = [a for a in result.actions if any(what == "date" for what, _ in a.problems)]
    outcomes = {
        "ratios_valid": (ratio, "held back: "),
        "dates_valid": (dates, "held back: "),
        "no_duplicate_actions": ([f"{dup} repeats {kept}" for dup, kept in sorted(result.duplicates.items())], ""),
        "names_agree_with_renames": (result.rename_disagreements, ""),
        "agrees_with_alpaca_adjusted": (result.alpaca_disagreements, ""),
    }
    checks = []
    for name, (found, prefix) in outcomes.items():
        lines = [f"{a.describe()}: {a.held_back}" if isinstance(a, Action) else str(a) for a in found]
        checks.append(dg.AssetCheckResult(
            check_name=name, passed=not found,
            severity=dg.AssetCheckSeverity.WARN if name in WARN_ONLY else dg.AssetCheckSeverity.ERROR,
            description=(prefix + "; ".join(lines[:5])) if found else None,
            metadata={"count": dg.MetadataValue.int(len(found)),
                      **({"compared": dg.MetadataValue.int(result.compared)} if name == "agrees_with_alpaca_adjusted" else {}),
                      **({"all": dg.MetadataValue.text("\n".join(lines[:200]))} if found else {})}))
    return checks


def _table(actions: list[Action], limit: int = 50) -> str:
    rows = ["| id | type | symbols | ex_date | reason |", "|---|---|---|---|---|"]
    rows += [f"| {a.id} | {a.type} | {', '.join(a.symbols)} | {a.ex_date or '?'} | {a.held_back} |" for a in actions[:limit]]
    return "\n".join(rows)


corporate_actions_job = dg.define_asset_job(
    "corporate_actions_job", selection=[corporate_actions],
    description="Corporate actions processed on a New York date (or a range, as one run), stored per company.")
daily_corporate_actions_schedule = dg.build_schedule_from_partitioned_job(
    corporate_actions_job, name="daily_corporate_actions_schedule", hour_of_day=0, minute_of_hour=30,  # 00:30 New York: after the 04:00 UTC sync in winter and summer
    description="Yesterday's New York process date, once the day has ended and the asset sync has run.",
    default_status=dg.DefaultScheduleStatus.RUNNING)

defs = dg.Definitions(assets=dg.with_source_code_references([corporate_actions]), jobs=[corporate_actions_job],
                      schedules=[daily_corporate_actions_schedule])
