"""The pipeline's one code location: each domain's definitions plus the shared resources.

Runs log through Dagster's console logger by default; run config
`loggers: {json: {config: {log_level: INFO}}}` switches a run to JSON lines.

Step outputs (the asset list between `alpaca_assets` and `validated_assets`) go to
the local filesystem by default; with `SIGNAL9_IO_MANAGER_BUCKET` set they go to S3,
so a run re-executed from a failed step in a new ECS task finds them.
"""

import dagster as dg
from dagster_aws.s3 import S3PickleIOManager, S3Resource

from signal9_pipeline import settings
from signal9_pipeline.alerting.sensor import pipeline_run_failure_alert
from signal9_pipeline.assets_sync import assets as assets_sync
from signal9_pipeline.corporate_actions import assets as corporate_actions
from signal9_pipeline.market_data import assets as market_data
from signal9_pipeline.pollenation.jobs import pollenation_events, pollenation_job
from signal9_pipeline.pollenation.sensor import new_symbols_sensor
from signal9_pipeline.resources.alerts import AlertsResource
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.resources.events import EventsResource
from signal9_pipeline.resources.metrics import MetricsResource


def _io_managers() -> dict:
    bucket = settings.get("SIGNAL9_IO_MANAGER_BUCKET")
    if not bucket:
        return {}
    return {"io_manager": S3PickleIOManager(s3_resource=S3Resource(), s3_bucket=bucket, s3_prefix="dagster/io")}


defs = dg.Definitions.merge(
    assets_sync.defs,
    market_data.defs,
    corporate_actions.defs,
    dg.Definitions(assets=[pollenation_events], jobs=[pollenation_job],
                   sensors=[new_symbols_sensor, pipeline_run_failure_alert]),
    dg.Definitions(
        # Every setting field is a dg.EnvVar of its registered variable, resolved when a run starts (the UI's
        # resource page names each one); an unset variable is its registered default (`FromSettings.env_vars`).
        resources={"alpaca": AlpacaResource.env_vars(), "alerts": AlertsResource.env_vars(),
                   "dynamodb": DynamoDBResource.env_vars(), "events": EventsResource.env_vars(),
                   "metrics": MetricsResource.env_vars(), **_io_managers()},
        loggers={"console": dg.colored_console_logger, "json": dg.json_console_logger},
        # Every job is a chain of steps (no parallel branches), so a subprocess per step (multiprocess, Dagster's
        # default) only adds its start-up, 5-9 s a step; a run's steps share its process, and in production its
        # ECS task. Step outputs still go through the IO manager, so a run re-executes from a failed step.
        executor=dg.in_process_executor,
    ),
)
