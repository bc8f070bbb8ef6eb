"""new_symbols_sensor: launch pollenation_job runs for symbols the asset sync marked pending.

Reads the sparse `pollenation-pending` index (only pending items are in it),
leaves out symbols that a queued or running pollenation run already covers,
and asks for at most `SIGNAL9_POLLENATION_MAX_RUNS` runs in flight at once of
`SIGNAL9_POLLENATION_BATCH_SIZE` symbols each, so an initial load of 12,000
symbols becomes 120 runs over time rather than 12,000 at once, and leaves room
for the daily sync.
"""

import dagster as dg

from signal9_pipeline import settings
from signal9_pipeline.assets_sync.changes import POLLENATION_MARKER
from signal9_pipeline.pollenation.batches import batch_key, plan_batches
from signal9_pipeline.pollenation.jobs import pollenation_job
from signal9_pipeline.resources.dynamodb import DynamoDBResource

INDEX = "pollenation-pending"
BATCH_TAG, COUNT_TAG = "signal9/pollenation_batch", "signal9/symbol_count"  # short tags; the symbols are in run config
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def pending_symbols(dynamodb: DynamoDBResource) -> list[str]:
    items = dynamodb.query(dynamodb.assets_table_name(), IndexName=INDEX, ProjectionExpression="symbol",
                           KeyConditionExpression=f"{POLLENATION_MARKER} = :one", ExpressionAttributeValues={":one": {"S": "1"}})
    return sorted(i["symbol"] for i in items)


def run_symbols(run: dg.DagsterRun) -> list[str]:
    """The symbols a pollenation run was launched for (its run config)."""
    return list(((run.run_config or {}).get("ops", {}).get("announce_new_symbols", {}).get("config", {})).get("symbols", []))


@dg.sensor(job=pollenation_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Launches pollenation_job runs, in batches, for symbols pending pollenation.")
def new_symbols_sensor(context: dg.SensorEvaluationContext, dynamodb: DynamoDBResource):
    batch_size = settings.get("SIGNAL9_POLLENATION_BATCH_SIZE")
    max_runs = settings.get("SIGNAL9_POLLENATION_MAX_RUNS")
    pending = pending_symbols(dynamodb)
    running = context.instance.get_runs(dg.RunsFilter(job_name=pollenation_job.name, statuses=IN_FLIGHT))
    in_flight = {s for run in running for s in run_symbols(run)}
    batches = plan_batches(pending, in_flight, batch_size, max_runs - len(running))
    if not batches:
        return dg.SkipReason(f"{len(pending)} symbol(s) pending, {len(in_flight)} in {len(running)} run(s) in flight")
    requests = []
    for batch in batches:
        key = batch_key(batch)
        finished = context.instance.get_runs_count(dg.RunsFilter(job_name=pollenation_job.name, tags={BATCH_TAG: key}))
        requests.append(dg.RunRequest(
            run_key=f"{key}:{finished}",
            run_config={"ops": {"announce_new_symbols": {"config": {"symbols": batch}}}},
            tags={BATCH_TAG: key, COUNT_TAG: str(len(batch))},
        ))
    context.log.info(f"{len(pending)} pending; launching {len(requests)} run(s) for {sum(len(b) for b in batches)} symbol(s)")
    return requests
