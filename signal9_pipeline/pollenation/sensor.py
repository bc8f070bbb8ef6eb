"""new_symbols_sensor: launch pollenation_job runs for the companies the asset sync marked pending.

Reads the sparse `pollenation-pending` index (only pending company items are in it),
leaves out companies that a queued or running pollenation run already covers,
and asks for at most `SIGNAL9_POLLENATION_MAX_RUNS` runs in flight at once of
`SIGNAL9_POLLENATION_BATCH_SIZE` companies each, so an initial load of 12,000
becomes 120 runs over time rather than 12,000 at once, and leaves room for the
daily sync. A reused ticker's new company is a company of its own, pollenated once.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from signal9_pipeline import settings
from signal9_pipeline.pollenation.batches import batch_key, plan_batches
from signal9_pipeline.pollenation.jobs import pollenation_job
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.tables.assets import AssetsTable

BATCH_TAG, COUNT_TAG = "signal9/pollenation_batch", "signal9/symbol_count"  # short tags; the ids are in run config
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def pending_companies(dynamodb: DynamoDBResource) -> list[str]:
    """The asset ids pending pollenation."""
    return sorted(i["alpaca_id"] for i in AssetsTable(dynamodb).pending_pollenation())


def run_companies(run: dg.DagsterRun) -> list[str]:
    """The asset ids a pollenation run was launched for (its run config)."""
    run_config: Mapping[str, Any] = run.run_config or {}
    return list((run_config.get("ops", {}).get("announce_new_symbols", {}).get("config", {})).get("asset_ids", []))


@dg.sensor(job=pollenation_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Launches pollenation_job runs, in batches, for companies pending pollenation.")
def new_symbols_sensor(context: dg.SensorEvaluationContext, dynamodb: DynamoDBResource):
    batch_size = settings.get("SIGNAL9_POLLENATION_BATCH_SIZE")
    max_runs = settings.get("SIGNAL9_POLLENATION_MAX_RUNS")
    pending = pending_companies(dynamodb)
    running = context.instance.get_runs(dg.RunsFilter(job_name=pollenation_job.name, statuses=IN_FLIGHT))
    in_flight = {i for run in running for i in run_companies(run)}
    batches = plan_batches(pending, in_flight, batch_size, max_runs - len(running))
    if not batches:
        return dg.SkipReason(f"{len(pending)} symbol(s) pending, {len(in_flight)} in {len(running)} run(s) in flight")
    requests = []
    for batch in batches:
        key = batch_key(batch)
        finished = context.instance.get_runs_count(dg.RunsFilter(job_name=pollenation_job.name, tags={BATCH_TAG: key}))
        requests.append(dg.RunRequest(
            run_key=f"{key}:{finished}",
            run_config={"ops": {"announce_new_symbols": {"config": {"asset_ids": batch}}}},
            tags={BATCH_TAG: key, COUNT_TAG: str(len(batch))},
        ))
    context.log.info(f"{len(pending)} pending; launching {len(requests)} run(s) for "
                     f"{sum(len(b) for b in batches)} symbol(s)")
    return requests
