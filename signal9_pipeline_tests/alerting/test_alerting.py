"""Alarms, the run-failure alert and the run time budget, against moto and the sandbox."""

import json

import boto3
import dagster as dg
import pytest
import requests

from signal9_devstack.local.provision import provision
from signal9_pipeline.alerting.alarms import ALARMS
from signal9_pipeline.alerting.sensor import pipeline_run_failure_alert
from signal9_pipeline.resources.alerts import AlertsResource
from signal9_pipeline.resources.events import EventsResource
from signal9_pipeline.settings import Settings
from signal9_pipeline_tests.support import EventTap, put_universe, run_sync, small_universe


def signal9_alarms() -> dict[str, dict]:
    pages = boto3.client("cloudwatch").get_paginator("describe_alarms").paginate(AlarmNamePrefix="signal9-")
    return {a["AlarmName"]: a for page in pages for a in page["MetricAlarms"]}


def test_provisioning_twice_creates_each_alarm_once_with_its_threshold(stack_env, monkeypatch):
    provision(Settings.from_env())
    provision(Settings.from_env())
    alarms = signal9_alarms()
    assert sorted(alarms) == sorted(a.name for a in ALARMS)
    topic = AlertsResource.from_settings().topic_arn()
    for alarm in ALARMS:
        stored = alarms[alarm.name]
        assert stored["Threshold"] == alarm.threshold and stored["AlarmActions"] == [topic]
        assert stored["AlarmDescription"].startswith(alarm.description[:40]) and "First:" in stored["AlarmDescription"]
    assert alarms["signal9-alpaca-api-failure-rate"]["Metrics"][2]["Expression"] == "100 * failures / total"
    monkeypatch.setenv("SIGNAL9_ALARM_OVERRIDES", json.dumps({"alpaca-latency": {"threshold": 3000, "period_s": 60}}))
    provision(Settings.from_env())
    latency = signal9_alarms()["signal9-alpaca-latency"]
    assert latency["Threshold"] == 3000 and latency["Period"] == 60
    monkeypatch.setenv("SIGNAL9_ALARM_OVERRIDES", json.dumps({"no-such-alarm": {"threshold": 1}}))
    with pytest.raises(ValueError, match="no-such-alarm"):
        provision(Settings.from_env())


class AlertTap:
    """An SQS queue subscribed to the alerts topic: what the on-call engineer receives."""

    def __init__(self):
        sqs = boto3.client("sqs")
        self.sqs, self.queue = sqs, sqs.create_queue(QueueName="alerts-tap")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        boto3.client("sns").subscribe(TopicArn=AlertsResource.from_settings().topic_arn(), Protocol="sqs", Endpoint=arn)

    def drain(self) -> list[dict]:
        received = []
        while messages := self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                received.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        return received


def alert_for(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> None:
    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events
                   if e.event_type_value == "PIPELINE_FAILURE" or e.event_type_value == "RUN_FAILURE")
    context = dg.build_run_status_sensor_context(
        sensor_name="pipeline_run_failure_alert", dagster_instance=instance, dagster_run=run, dagster_event=failure,
        resources={"alerts": AlertsResource.from_settings(),
                   "events": EventsResource.from_settings()}).for_run_failure()
    pipeline_run_failure_alert(context)


def test_a_sync_refused_by_alpaca_sends_one_alert_naming_the_error_and_no_credential(sync_env, default_universe,
                                                                                     caplog):
    import logging

    from signal9_pipeline.logs import fields_of

    caplog.set_level(logging.INFO, logger="signal9.alerts")
    put_universe(sync_env, small_universe(default_universe, n=20))
    alerts, events = AlertTap(), EventTap(sync_env["SIGNAL9_EVENT_BUS"], "run-failed-tap", ["pipelineRunFailed"])
    requests.post(f"{sync_env['SIGNAL9_SANDBOX_URL']}/_sandbox/faults",
                  json={"error_rate": 1.0, "error_statuses": [401]}, timeout=10)
    with dg.instance_for_test() as instance:
        result = run_sync(instance=instance)
        assert not result.success
        alert_for(instance, result)
    received = alerts.drain()
    assert len(received) == 1
    body = json.loads(received[0]["Message"])
    assert (body["errorType"] == "AlpacaAuthError" and body["job"] == "asset_sync_job"
            and body["step"] == "alpaca_assets")
    assert "AlpacaAuthError" in received[0]["Subject"] and body["runUrl"].endswith(f"/runs/{result.run_id}")
    delivered = events.drain()
    assert len(delivered) == 1 and delivered[0]["detail"]["errorType"] == "AlpacaAuthError"
    # what the tick records
    (sent,) = [fields_of(r) for r in caplog.records if getattr(r, "event", None) == "alert_sent"]
    assert sent["run_id"] == result.run_id and sent["error_type"] == "AlpacaAuthError" and sent["event_delivered"]
    assert (sent["sns_message_id"] == received[0]["MessageId"]
            and sent["sns_topic"] == AlertsResource.from_settings().topic_arn())
    secret = json.loads(boto3.client("secretsmanager").get_secret_value(
        SecretId=sync_env["ALPACA_SECRET_ID"])["SecretString"])
    everything = json.dumps(received) + json.dumps(delivered)
    assert secret["apiKey"] not in everything and secret["secretKey"] not in everything


def test_a_sync_slowed_past_its_budget_fails_with_the_timeout_metric(sync_env, default_universe):
    put_universe(sync_env, small_universe(default_universe, n=20))
    requests.post(f"{sync_env['SIGNAL9_SANDBOX_URL']}/_sandbox/faults", json={"hang_s": 60, "hang_every": 1},
                  timeout=10)
    from signal9_pipeline.definitions import defs

    result = defs.resolve_job_def("asset_sync_job").execute_in_process(
        raise_on_error=False, tags={"signal9/time_budget_s": "3"})
    requests.post(f"{sync_env['SIGNAL9_SANDBOX_URL']}/_sandbox/reset", timeout=10)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "alpaca_assets" and "RunTimeBudgetExceeded" in failure.event_specific_data.error.message
    assert "time budget of 3 s" in failure.event_specific_data.error.message
    metrics = boto3.client("cloudwatch").list_metrics(Namespace="Signal9/Pipeline", MetricName="RunTimeBudgetExceeded")
    assert {"Name": "Job", "Value": "asset_sync_job"} in [d for m in metrics["Metrics"] for d in m["Dimensions"]]
