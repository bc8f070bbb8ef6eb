"""The CloudWatch alarms that page for the pipeline, created idempotently by `provision`.

One alarm per criterion of the original design; names and descriptions say
what broke and what to do first (the runbook in README.md has the rest).
Thresholds and periods are defaults that `SIGNAL9_ALARM_OVERRIDES` (JSON:
`{"alarm-suffix": {"threshold": N, "period_s": N, "evaluation_periods": N}}`)
can change without code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import boto3

from signal9_pipeline import settings

PREFIX = "signal9-"


@dataclass(frozen=True)
class Alarm:
    suffix: str
    description: str
    threshold: float
    period_s: int
    metric: str | None = None  # a single metric (Sum unless statistic says otherwise) ...
    statistic: str = "Sum"
    dimensions: tuple[tuple[str, str], ...] = ()
    ratio_of: tuple[str, str] | None = None  # ... or 100 * numerator / denominator, in percent
    ratio_dimensions: tuple[tuple[str, str], ...] = ()
    evaluation_periods: int = 1

    @property
    def name(self) -> str:
        return PREFIX + self.suffix


ALARMS = (
    Alarm("asset-sync-failed", "The daily asset sync failed. First: open the failed run from the pipelineRunFailed "
          "alert (its error type names the cause), then rerun asset_sync_job.", 1, 300, metric="AssetSyncFailure"),
    Alarm("asset-sync-failure-rate", "More than 5% of asset sync steps failed over a day. First: look for a recurring "
          "error type in the recent failed runs of asset_sync_job.", 5, 86_400,
          ratio_of=("AssetSyncFailure", "AssetSyncSteps")),
    Alarm("alpaca-api-failure-rate", "More than 10% of Alpaca requests failed in 5 minutes. First: AlpacaApiFailures "
          "by ErrorType says auth, rate limit, server error or timeout; check Alpaca's status page.", 10, 300,
          ratio_of=("AlpacaApiFailures", "AlpacaApiCalls")),
    Alarm("asset-sync-api-failure-rate", "More than 5% of the asset sync's Alpaca requests failed. First: check the "
          "sync run's alpaca_request log lines for the failing status.", 5, 300,
          ratio_of=("AlpacaApiFailures", "AlpacaApiCalls"), ratio_dimensions=(("Job", "asset_sync_job"),)),
    Alarm("market-data-failure-rate", "More than 10% of market-data requests failed. First: open the failed "
          "daily_bars_job runs; rerun their partitions once Alpaca answers again.", 10, 300,
          ratio_of=("AlpacaApiFailures", "AlpacaApiCalls"), ratio_dimensions=(("Job", "daily_bars_job"),)),
    Alarm("alpaca-latency", "Alpaca's average response time is above 5 s. First: check Alpaca's status page and "
          "the network path; runs slow down and may exceed their time budget.", 5000, 300,
          metric="AlpacaApiLatency", statistic="Average"),
    Alarm("alpaca-rate-limit-exceeded", "Alpaca answered 429: the account's rate limit was exceeded. First: check "
          "that every process uses the shared limiter (SIGNAL9_RATE_LIMITER_URL) and no other client uses the key.",
          1, 300, metric="AlpacaRateLimitExceeded"),
    Alarm("run-time-budget", "A run came near or past its time budget (asset sync: over 4 of 5 minutes). First: "
          "look at the run's step durations and Alpaca latency; a RunTimeBudgetExceeded failure needs a rerun.",
          240_000, 300, metric="RunDuration", statistic="Maximum", dimensions=(("Job", "asset_sync_job"),)),
)


def configured_alarms() -> list[Alarm]:
    overrides = settings.get("SIGNAL9_ALARM_OVERRIDES")
    unknown = set(overrides) - {a.suffix for a in ALARMS}
    if unknown:
        raise ValueError(f"SIGNAL9_ALARM_OVERRIDES names unknown alarms {sorted(unknown)}; "
                         f"known: {', '.join(a.suffix for a in ALARMS)}")
    return [replace(a, **overrides.get(a.suffix, {})) for a in ALARMS]


def ensure_alarms(namespace: str, topic_arn: str) -> list[str]:
    """Create or update every alarm (PutMetricAlarm is idempotent by name)."""
    cloudwatch = boto3.client("cloudwatch")
    for alarm in configured_alarms():
        cloudwatch.put_metric_alarm(**alarm_request(alarm, namespace, topic_arn))
    return [f"alarm {a.name}: configured" for a in configured_alarms()]


def alarm_request(alarm: Alarm, namespace: str, topic_arn: str) -> dict[str, Any]:
    request: dict[str, Any] = {
        "AlarmName": alarm.name, "AlarmDescription": alarm.description, "ActionsEnabled": True,
        "AlarmActions": [topic_arn], "OKActions": [topic_arn], "EvaluationPeriods": alarm.evaluation_periods,
        "Threshold": float(alarm.threshold), "ComparisonOperator": "GreaterThanOrEqualToThreshold"
        if alarm.metric and alarm.statistic == "Sum" else "GreaterThanThreshold", "TreatMissingData": "notBreaching",
    }
    dims = [{"Name": k, "Value": v} for k, v in alarm.dimensions]
    if alarm.metric:
        request.update(Namespace=namespace, MetricName=alarm.metric, Statistic=alarm.statistic, Period=alarm.period_s,
                       Dimensions=dims)
        return request
    assert alarm.ratio_of is not None, f"{alarm.name}: an alarm is on a metric or on a ratio of two"
    numerator, denominator = alarm.ratio_of
    ratio_dims = [{"Name": k, "Value": v} for k, v in alarm.ratio_dimensions]

    def stat(metric_id: str, name: str) -> dict:
        return {"Id": metric_id, "ReturnData": False, "MetricStat": {
            "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": ratio_dims},
            "Period": alarm.period_s, "Stat": "Sum"}}

    request["Metrics"] = [stat("failures", numerator), stat("total", denominator),
                          {"Id": "rate", "Expression": "100 * failures / total", "Label": "percent",
                           "ReturnData": True}]
    return request
