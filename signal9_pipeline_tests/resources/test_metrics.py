"""CloudWatch metrics from the access layer, and what happens when CloudWatch is down."""

import logging

import boto3

from signal9_pipeline.logs import fields_of
from signal9_pipeline.resources import metrics
from signal9_pipeline.resources.metrics import MetricsPublisher, MetricsResource


def metric_names(namespace: str) -> set[str]:
    pages = boto3.client("cloudwatch").get_paginator("list_metrics").paginate(Namespace=namespace)
    return {m["MetricName"] for page in pages for m in page["Metrics"]}


def test_api_calls_latency_and_failures_reach_cloudwatch(sandbox, resource_for):
    resource = resource_for(sandbox, metrics_namespace="Signal9/Test/Access")
    resource.gateway().get("trading", "/calendar", {"start": "2024-01-02", "end": "2024-01-03"})
    assert MetricsResource.from_settings(namespace="Signal9/Test/Access").flush() > 0
    assert {"AlpacaApiCalls", "AlpacaApiLatency"} <= metric_names("Signal9/Test/Access")
    stats = boto3.client("cloudwatch").get_metric_statistics(
        Namespace="Signal9/Test/Access", MetricName="AlpacaApiCalls",
        Dimensions=[{"Name": "Endpoint", "Value": "calendar"}],
        StartTime="2020-01-01", EndTime="2100-01-01", Period=86400 * 365, Statistics=["Sum"])
    assert sum(p["Sum"] for p in stats["Datapoints"]) == 1


def test_assets_and_jobs_can_record_their_own_metrics(stack_env):
    metrics = MetricsResource.from_settings(namespace="Signal9/Test/Jobs")
    metrics.put("AssetSyncSuccess", 1, Job="asset_sync_job")
    metrics.put("ExecutionDuration", 1234.5, "Milliseconds", Job="asset_sync_job")
    assert metrics.flush() == 2
    assert metric_names("Signal9/Test/Jobs") == {"AssetSyncSuccess", "ExecutionDuration"}


def test_cloudwatch_down_logs_a_warning_and_never_raises(stack_env, monkeypatch, caplog):
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", "http://127.0.0.1:9")
    publisher = MetricsPublisher("Signal9/Test/Down")
    caplog.set_level(logging.WARNING, logger="signal9.metrics")
    for _ in range(3):
        publisher.put("AlpacaApiCalls", 1, Endpoint="assets")
    assert publisher.flush() == 0
    dropped = [fields_of(r) for r in caplog.records if getattr(r, "event", None) == "metrics_dropped"]
    assert publisher.failures == 1 and dropped == [{"event": "metrics_dropped", "namespace": "Signal9/Test/Down",
                                                    "datums": 3, "error": dropped[0]["error"]}]
    assert "CloudWatch refused 3 metric datum(s)" in caplog.text  # a sentence a person reads


def test_a_full_buffer_is_sent_without_waiting_for_the_end(stack_env):
    publisher = MetricsPublisher("Signal9/Test/Batch")
    for _ in range(500):
        publisher.put("AlpacaApiCalls", 1)
    assert publisher.sent == 500 and publisher.flush() == 0


def test_flush_sends_what_every_namespace_holds_and_reset_starts_afresh(stack_env):
    metrics.flush()  # what earlier tests left behind
    first = MetricsResource.from_settings(namespace="Signal9/Test/A")
    second = MetricsResource.from_settings(namespace="Signal9/Test/B")
    first.put("AssetSyncSuccess", 1)
    second.put("AssetSyncSuccess", 1)
    second.put("ExecutionDuration", 5, "Milliseconds")
    assert metrics.flush() == 3 and metrics.flush() == 0
    assert metric_names("Signal9/Test/A") == {"AssetSyncSuccess"}
    assert metric_names("Signal9/Test/B") == {"AssetSyncSuccess", "ExecutionDuration"}
    held = metrics.publisher_for("Signal9/Test/A")
    metrics.reset()
    assert metrics.publisher_for("Signal9/Test/A") is not held and metrics.publisher_for("Signal9/Test/A").sent == 0
