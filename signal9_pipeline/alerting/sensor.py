"""pipeline_run_failure_alert: one alert for every failed run of a Signal9 job.

The alert (an SNS message and a `pipelineRunFailed` EventBridge event, whose id
is the run id so a repeat is dropped) says which job, which step, which typed
error and its message, and links to the run in the Dagster UI
(SIGNAL9_DAGSTER_URL). Error messages are the pipeline's own and never carry
credentials.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import dagster as dg

from signal9_pipeline import logs, settings
from signal9_pipeline.resources.alerts import AlertsResource
from signal9_pipeline.resources.events import Event, EventsResource

WRAPPERS = ("Failure", "RetryRequestedFromPolicy", "DagsterExecutionStepExecutionError")
log = logging.getLogger("signal9.alerts")


def error_type(error) -> str:
    """The typed error behind Dagster's wrappers (Failure, step retries), e.g. AlpacaAuthError."""
    while error is not None and error.cls_name in WRAPPERS and error.cause is not None:
        error = error.cause
    return error.cls_name if error is not None else "unknown"


def build_alert(run: dg.DagsterRun, step_failures: Sequence[dg.DagsterEvent]) -> dict:
    failure = step_failures[0] if step_failures else None
    error = failure.step_failure_data.error if failure else None
    base = settings.get("SIGNAL9_DAGSTER_URL").rstrip("/")
    return {
        "job": run.job_name,
        "runId": run.run_id,
        "step": failure.step_key if failure else None,
        "errorType": error_type(error) if error else "unknown",
        "message": (error.message.strip() if error else "the run failed before any step ran")[:1000],
        "runUrl": f"{base}/runs/{run.run_id}",
        "partition": run.tags.get("dagster/partition"),
    }


@dg.run_failure_sensor(name="pipeline_run_failure_alert", default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Publishes an SNS alert and a pipelineRunFailed event for every failed run.")
def pipeline_run_failure_alert(context: dg.RunFailureSensorContext, alerts: AlertsResource, events: EventsResource):
    alert = build_alert(context.dagster_run, context.get_step_failure_events())
    subject = f"Signal9: {alert['job']} failed at {alert['step'] or 'start'}: {alert['errorType']}"
    message_id = alerts.publish(subject, json.dumps(alert, indent=2))
    undelivered = events.publish([Event("pipelineRunFailed", alert, event_id=f"pipelineRunFailed:{alert['runId']}")])
    sent = {"run_id": alert["runId"], "job": alert["job"], "step": alert["step"], "error_type": alert["errorType"],
            "sns_topic": alerts.topic_arn(), "sns_message_id": message_id, "event_bus": events.bus(),
            "event_delivered": not undelivered}
    sentence = (f"alert sent for run {alert['runId']} of {alert['job']} "
                f"({alert['errorType']} at {alert['step'] or 'start'}): "
                f"SNS {sent['sns_topic']} message {message_id}; pipelineRunFailed on {sent['event_bus']} "
                + ("delivered" if not undelivered else "NOT accepted (the SNS alert was sent)"))
    context.log.info(sentence)  # the sensor's tick shows what it sent
    logs.event(log, logging.WARNING if undelivered else logging.INFO, sentence, "alert_sent", **sent)
