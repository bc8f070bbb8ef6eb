"""Dagster wiring of the daily asset sync: alpaca_assets -> validated_assets -> assets_table.

The logic lives in `validation` and `changes`; this module fetches, calls it,
writes, and reports (metadata the UI plots, asset checks, CloudWatch metrics,
the `assetSyncComplete` event). Blocking checks on `validated_assets` stop a
bad answer (schema, quarantine rate, mass delisting) before anything is written.
"""

import collections
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

import dagster as dg

from signal9_pipeline import logs
from signal9_pipeline.assets_sync.changes import Observation, SyncPlan, plan_loading_whole, plan_sync
from signal9_pipeline.assets_sync.status_events import asset_status_events
from signal9_pipeline.assets_sync.validation import AssetSchema, Quarantined, validate_assets
from signal9_pipeline.catalog import ASSETS_TABLE_COLUMNS, OWNERS, table_metadata
from signal9_pipeline.identity import observation_day
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.alpaca_errors import fail_without_step_retries
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.resources.events import Event, EventsResource
from signal9_pipeline.resources.metrics import MetricsResource
from signal9_pipeline.tables.assets import COMPANY_DECISION_FIELDS, AssetsTable, is_listed
from signal9_pipeline.timestamps import utc_stamp

GROUP = "asset_sync"
log = logging.getLogger("signal9.sync")
FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="30 4 * * *", lower_bound_delta=timedelta(hours=24), timezone="UTC")
STEP_RETRY = dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
CHANGES_SHOWN = 25


class SyncConfig(dg.Config):
    """Guards of one sync; `allow_mass_delisting: true` lets an operator accept a large drop on purpose."""

    allow_mass_delisting: bool = False
    max_active_drop_fraction: float = 0.05
    max_quarantine_fraction: float = 0.01


@dataclass
class ValidatedAssets:
    rows: list[dict]
    quarantined: list[Quarantined]
    warnings: dict[str, int]
    # Quarantined ids and symbols with no valid row: the companies they name are left untouched.
    held_back_ids: set[str] = field(default_factory=set)
    held_back_symbols: set[str] = field(default_factory=set)

    @property
    def listed_symbols(self) -> set[str]:
        return {r["symbol"] for r in self.rows if is_listed(r)}


def _markdown(rows: list[tuple], header: tuple[str, ...]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|")[:120] for c in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))


@dg.asset(group_name=GROUP, kinds={"alpaca"}, pool="alpaca_api", retry_policy=STEP_RETRY, owners=OWNERS,
          description="Every asset Alpaca lists (all statuses and classes), as the API returns them.")
def alpaca_assets(context: dg.AssetExecutionContext, alpaca: AlpacaResource,
                  metrics: MetricsResource) -> dg.Output[list]:
    started, before = time.monotonic(), alpaca.requests_sent
    with fail_without_step_retries():
        assets = alpaca.list_assets()
    requests_used = alpaca.requests_sent - before
    metadata = {"dagster/row_count": dg.MetadataValue.int(len(assets)),
                "requests_used": dg.MetadataValue.int(requests_used),
                "duration_s": dg.MetadataValue.float(round(time.monotonic() - started, 3))}
    for key in ("class", "status", "exchange"):
        for value, count in sorted(collections.Counter(str(a.get(key)) for a in assets).items()):
            metadata[f"{key}/{value}"] = dg.MetadataValue.int(count)
    metrics.put("AlpacaAssetsFetched", len(assets))
    context.log.info(f"fetched {len(assets)} assets from Alpaca in {requests_used} request(s)")
    return dg.Output(assets, metadata=metadata)


@dg.asset(
    group_name=GROUP, kinds={"pandera"}, freshness_policy=FRESHNESS, owners=OWNERS,
    description="Alpaca's assets normalized and validated; invalid rows quarantined with a reason each.",
    check_specs=[
        dg.AssetCheckSpec("validated_rows_conform", asset="validated_assets", blocking=True,
                          description="Postcondition of the validation: the rows passed on (the quarantined ones "
                                      "taken out) conform to the pandera AssetSchema, with no id twice and no symbol "
                                      "listed twice. Alpaca's answer is judged by quarantine_rate and "
                                      "mass_delisting_guard; this fails only if validation passed on a row that its "
                                      "own schema refuses."),
        dg.AssetCheckSpec("quarantine_rate", asset="validated_assets", blocking=True,
                          description="Share of quarantined rows below max_quarantine_fraction (default 1%)."),
        dg.AssetCheckSpec("mass_delisting_guard", asset="validated_assets", blocking=True,
                          description="Listed assets would not drop by more than max_active_drop_fraction (default 5%) "
                                      "from the table's; an empty, truncated or wrong-account answer trips it."),
    ],
)
def validated_assets(context: dg.AssetExecutionContext, config: SyncConfig, alpaca_assets: list,
                     dynamodb: DynamoDBResource, metrics: MetricsResource):
    started = time.monotonic()
    result = validate_assets(alpaca_assets)
    valid_symbols, valid_ids = set(result.valid["symbol"]), set(result.valid["alpaca_id"])
    held_back_symbols = {q.symbol for q in result.quarantined if q.symbol and q.symbol not in valid_symbols}
    held_back_ids = {q.alpaca_id.strip().lower() for q in result.quarantined
                     if q.alpaca_id and q.alpaca_id.strip().lower() not in valid_ids}
    rows = result.valid.to_dict("records")
    validated = ValidatedAssets(rows, result.quarantined, result.warnings, held_back_ids, held_back_symbols)
    quarantine_rate = len(result.quarantined) / max(1, len(alpaca_assets))
    metadata = {
        "dagster/row_count": dg.MetadataValue.int(len(rows)),
        "listed": dg.MetadataValue.int(len(validated.listed_symbols)),
        "quarantined": dg.MetadataValue.int(len(result.quarantined)),
        "warnings": dg.MetadataValue.int(sum(result.warnings.values())),
        "duration_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
        "quarantine": _markdown([(q.row, q.symbol, q.alpaca_id, q.reason) for q in result.quarantined[:50]],
                                ("row", "symbol", "id", "reason")),
    }
    for name, count in sorted(result.warnings.items()):
        metadata[f"warning/{name}"] = dg.MetadataValue.int(count)
        context.log.warning(f"kept with warning {name} (an unknown value, or a name that was normalised): "
                            f"{count} row(s)")
    for q in result.quarantined[:200]:
        context.log.warning(f"quarantined row {q.row} (symbol {q.symbol!r}): {q.reason}")
    metrics.put("AssetsQuarantined", len(result.quarantined))
    yield dg.Output(validated, metadata=metadata)
    yield _validated_rows_conform(result.valid)
    yield dg.AssetCheckResult(
        check_name="quarantine_rate", passed=quarantine_rate <= config.max_quarantine_fraction,
        metadata={"quarantine_rate": dg.MetadataValue.float(round(quarantine_rate, 6)),
                  "threshold": dg.MetadataValue.float(config.max_quarantine_fraction)})
    yield _mass_delisting_check(context, config, validated, dynamodb, metrics)


def _validated_rows_conform(valid) -> dg.AssetCheckResult:
    """The validation's postcondition, checked on its output: the schema that quarantined holds for what was kept."""
    try:
        AssetSchema.validate(valid, lazy=True)
        problem = None
    except Exception as exc:  # pandera's SchemaErrors, or anything else that means "not the contract"
        problem = str(exc)[:500]
    listed = valid["status"].eq("active") & valid["tradable"].eq(True)
    duplicates = int(valid.loc[listed, "symbol"].duplicated().sum() + valid["alpaca_id"].duplicated().sum())
    return dg.AssetCheckResult(check_name="validated_rows_conform", passed=problem is None and duplicates == 0,
                               metadata={"duplicates": dg.MetadataValue.int(duplicates),
                                         "problem": dg.MetadataValue.text(problem or "none")})


def _mass_delisting_check(context, config: SyncConfig, validated: ValidatedAssets, dynamodb: DynamoDBResource,
                          metrics: MetricsResource) -> dg.AssetCheckResult:
    listed_now = AssetsTable(dynamodb).listed_symbols()
    listed_next = validated.listed_symbols | (validated.held_back_symbols & listed_now)
    drop = (len(listed_now) - len(listed_next)) / len(listed_now) if listed_now else 0.0
    tripped = drop > config.max_active_drop_fraction
    passed = not tripped or config.allow_mass_delisting
    if tripped:
        metrics.put("MassDelistingGuardTripped", 1)
        message = (f"listed assets would drop from {len(listed_now)} to {len(listed_next)} ({drop:.1%}, limit "
                   f"{config.max_active_drop_fraction:.0%}): Alpaca's answer looks empty, truncated or from the wrong "
                   "account. Nothing was written. If the drop is real, rerun with run config "
                   "ops.validated_assets.config.allow_mass_delisting: true")
        (context.log.warning if passed else context.log.error)(
            message + (" (overridden by allow_mass_delisting)" if passed else ""))
    return dg.AssetCheckResult(
        check_name="mass_delisting_guard", passed=passed,
        description=None if not tripped else f"drop of {drop:.1%} from {len(listed_now)} listed assets",
        metadata={"listed_in_table": dg.MetadataValue.int(len(listed_now)),
                  "listed_after_sync": dg.MetadataValue.int(len(listed_next)),
                  "drop_fraction": dg.MetadataValue.float(round(drop, 6)),
                  "overridden": dg.MetadataValue.bool(tripped and config.allow_mass_delisting)})


@dg.asset(
    group_name=GROUP, kinds={"dynamodb"}, freshness_policy=FRESHNESS, retry_policy=STEP_RETRY, owners=OWNERS,
    metadata=table_metadata("SIGNAL9_ASSETS_TABLE", ASSETS_TABLE_COLUMNS),
    description="The DynamoDB assets table: every company by Alpaca id (ID#{id}) with its symbol history, and every "
                "symbol (ASSET#{symbol}) showing its current holder and all its holders; written only where something "
                "changed; delisted companies marked inactive, never deleted.",
    check_specs=[dg.AssetCheckSpec("reconciliation", asset="assets_table",
                                   description="After the write, the table's listed set equals the validated "
                                               "listed set.")],
)
def assets_table(context: dg.AssetExecutionContext, validated_assets: ValidatedAssets, dynamodb: DynamoDBResource,
                 events: EventsResource, metrics: MetricsResource):
    started, table = time.monotonic(), AssetsTable(dynamodb)
    seen = Observation(utc_stamp(), observation_day(), table.last_observation_day())
    plan = _plan_against_table(table, validated_assets, seen)
    write_requests = table.write(plan.companies, plan.views)
    table.record_observation(seen.day, seen.now)
    duration = time.monotonic() - started
    counts = {kind: int(n) for kind, n in plan.counts.items()}
    items_written = len(plan.companies) + len(plan.views)
    logs.event(log, logging.INFO, "asset sync: " + ", ".join(f"{n} {k}" for k, n in counts.items())
               + f"; {write_requests} write request(s) for {items_written} item(s)", "asset_sync_summary",
               **counts, write_requests=write_requests, items_written=items_written)
    for kind, n in counts.items():
        metrics.put(f"AssetSync{kind.capitalize()}", n)
    metrics.put("AssetSyncWriteRequests", write_requests)
    metrics.put("AssetSyncDuration", duration * 1000, "Milliseconds")
    undelivered = events.publish([Event("assetSyncComplete", {**counts, "listed": len(plan.listed_after),
                                                              "writeRequests": write_requests, "timestamp": seen.now},
                                        event_id=f"assetSyncComplete:{context.run.run_id}")])
    if undelivered:
        raise RuntimeError("the table is written but the assetSyncComplete event was not accepted by EventBridge; "
                           "rerun the job to publish it (the rerun writes nothing)")
    yield dg.MaterializeResult(metadata={
        **{kind: dg.MetadataValue.int(n) for kind, n in counts.items()},
        "listed": dg.MetadataValue.int(len(plan.listed_after)),
        "write_requests": dg.MetadataValue.int(write_requests),
        "items_written": dg.MetadataValue.int(items_written),
        "companies_written": dg.MetadataValue.int(len(plan.companies)),
        "symbols_written": dg.MetadataValue.int(len(plan.views)),
        "observation_day": dg.MetadataValue.text(seen.day),
        "duration_s": dg.MetadataValue.float(round(duration, 3)),
        "changes": _markdown([(c.symbol, c.kind, c.detail) for c in plan.changes[:CHANGES_SHOWN]],
                             ("symbol", "change", "detail")),
    })
    yield _reconciliation_check(table, plan.listed_after)


def _plan_against_table(table: AssetsTable, validated: ValidatedAssets, seen: Observation) -> SyncPlan:
    """The sync's plan from a scan of only the fields that decide it, plus the whole items (read consistently) of
    the companies it changes or shows: a no-change sync parses a few attributes per item, not every history."""
    views = table.view_sources()
    return plan_loading_whole(
        lambda companies: plan_sync(validated.rows, companies, views, seen, held_back_ids=validated.held_back_ids,
                                    held_back_symbols=validated.held_back_symbols),
        table.companies(COMPANY_DECISION_FIELDS), table.get_companies)


def _reconciliation_check(table: AssetsTable, expected: set[str]) -> dg.AssetCheckResult:
    actual = table.listed_symbols()
    missing, extra = sorted(expected - actual), sorted(actual - expected)
    return dg.AssetCheckResult(
        check_name="reconciliation", passed=not missing and not extra,
        metadata={"listed_in_table": dg.MetadataValue.int(len(actual)),
                  "missing_from_table": dg.MetadataValue.int(len(missing)),
                  "unexpected_in_table": dg.MetadataValue.int(len(extra)),
                  "sample": dg.MetadataValue.text(", ".join((missing + extra)[:20]) or "none")})


@dg.success_hook(required_resource_keys={"metrics"})
def record_sync_success(context: dg.HookContext) -> None:
    context.resources.metrics.put("AssetSyncSuccess", 1, Step=context.op.name)
    context.resources.metrics.put("AssetSyncSteps", 1)


@dg.failure_hook(required_resource_keys={"metrics"})
def record_sync_failure(context: dg.HookContext) -> None:
    context.resources.metrics.put("AssetSyncFailure", 1, Step=context.op.name)
    context.resources.metrics.put("AssetSyncFailure", 1)
    context.resources.metrics.put("AssetSyncSteps", 1)
    context.resources.metrics.flush()


asset_sync_job = dg.define_asset_job(
    "asset_sync_job", selection=[alpaca_assets, validated_assets, assets_table, asset_status_events],
    hooks={record_sync_success, record_sync_failure},
    description="The daily asset sync: Alpaca's list, validated, into the assets table.",
    # The original 5-minute budget: Alpaca calls stop at it (signal9/time_budget_s); run monitoring
    # fails a run still going at dagster/max_runtime whatever it is doing.
    tags={"signal9/time_budget_s": "300", "dagster/max_runtime": "360"},
)

daily_asset_sync_schedule = dg.ScheduleDefinition(
    name="daily_asset_sync_schedule", job=asset_sync_job, cron_schedule="0 4 * * *", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 04:00 UTC: Alpaca's asset list into the assets table; the bars and corporate actions "
                "of the day run after it.",
)

defs = dg.Definitions(assets=dg.with_source_code_references([alpaca_assets, validated_assets, assets_table,
                                                             asset_status_events]),
                      jobs=[asset_sync_job],
                      schedules=[daily_asset_sync_schedule])
