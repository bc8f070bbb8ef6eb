"""CloudWatch metrics, batched; a CloudWatch failure is logged and never fails a run.

The access layer and the assets record datapoints into a per-process buffer;
it is sent with `PutMetricData` in batches when it fills, when a run's step
ends (`MetricsResource` teardown) and when the process exits.
"""

from __future__ import annotations

import atexit
import logging
import threading
from datetime import datetime, timezone
from typing import TYPE_CHECKING, ClassVar

import boto3
import dagster as dg
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from signal9_pipeline import logs, settings
from signal9_pipeline.resources.configured import FromSettings

if TYPE_CHECKING:
    from types_boto3_cloudwatch import CloudWatchClient

MAX_BATCH = 500  # PutMetricData takes up to 1,000 datums per call
log = logging.getLogger("signal9.metrics")


class MetricsPublisher:
    """A thread-safe buffer of datapoints for one CloudWatch namespace."""

    def __init__(self, namespace: str):
        self.namespace = namespace
        self._buffer: list[dict] = []
        self._lock = threading.Lock()
        self._client: CloudWatchClient | None = None
        try:
            self._cloudwatch()  # bind the endpoint the environment names now, not at interpreter exit
        except BotoCoreError:
            pass  # retried at flush; a missing region must not stop a run
        self.sent = 0
        self.failures = 0

    def put(self, name: str, value: float, unit: str = "Count", **dimensions: str) -> None:
        datum = {
            "MetricName": name,
            "Value": float(value),
            "Unit": unit,
            "Timestamp": datetime.now(timezone.utc),
            "Dimensions": [{"Name": k, "Value": str(v)[:255]} for k, v in sorted(dimensions.items())],
        }
        with self._lock:
            self._buffer.append(datum)
            full = len(self._buffer) >= MAX_BATCH
        if full:
            self.flush()

    def flush(self) -> int:
        """Send what is buffered; returns datums sent. On failure logs a warning and drops the batch."""
        with self._lock:
            batch, self._buffer = self._buffer, []
        sent = 0
        for start in range(0, len(batch), MAX_BATCH):
            chunk = batch[start : start + MAX_BATCH]
            try:
                self._cloudwatch().put_metric_data(Namespace=self.namespace, MetricData=chunk)
                sent += len(chunk)
            except (BotoCoreError, ClientError) as exc:
                self.failures += 1
                logs.event(log, logging.WARNING, f"CloudWatch refused {len(chunk)} metric datum(s) of {self.namespace} "
                           f"({type(exc).__name__}); dropped, metrics are best effort", "metrics_dropped",
                           namespace=self.namespace, datums=len(chunk), error=type(exc).__name__)
        self.sent += sent
        return sent

    def _cloudwatch(self):
        if self._client is None:
            try:
                # Metrics are best effort: a short timeout and few retries keep a CloudWatch outage from slowing runs.
                self._client = boto3.client("cloudwatch",
                                            config=Config(connect_timeout=3, read_timeout=5,
                                                          retries={"max_attempts": 2, "mode": "standard"}))
            except BotoCoreError as exc:
                logs.event(log, logging.WARNING, f"no CloudWatch client ({type(exc).__name__}): metrics are not sent",
                           "metrics_unconfigured", error=type(exc).__name__)
                raise
        return self._client


_publishers: dict[str, MetricsPublisher] = {}
_publishers_lock = threading.Lock()


def publisher_for(namespace: str) -> MetricsPublisher:
    with _publishers_lock:
        if namespace not in _publishers:
            _publishers[namespace] = MetricsPublisher(namespace)
        return _publishers[namespace]


@atexit.register
def flush() -> int:
    """Send what every publisher of this process holds; returns datums sent. Runs again at interpreter exit."""
    return sum(publisher.flush() for publisher in list(_publishers.values()))


def reset() -> None:
    """Forget every publisher, with what it holds unsent: the next datapoint of each namespace builds a new one,
    whose CloudWatch client follows the environment as it is then (tests that move or stop the endpoint)."""
    with _publishers_lock:
        _publishers.clear()


class MetricsResource(FromSettings, dg.ConfigurableResource):
    """CloudWatch metrics for assets and jobs, in one namespace.

    The datapoints go through the process's publisher for that namespace, which the Alpaca access layer shares,
    and its CloudWatch client follows boto3's own configuration (`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`).
    """

    SETTINGS: ClassVar[dict[str, str]] = {"namespace": "SIGNAL9_METRICS_NAMESPACE"}

    namespace: str = settings.default("SIGNAL9_METRICS_NAMESPACE")

    def put(self, name: str, value: float, unit: str = "Count", **dimensions: str) -> None:
        publisher_for(self.namespace).put(name, value, unit, **dimensions)

    def flush(self) -> int:
        return publisher_for(self.namespace).flush()

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        from signal9_pipeline.resources import run_scope

        run_scope.enter_from(context)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        from signal9_pipeline.resources import run_scope

        scope = run_scope.current()
        if scope.job:  # how long the run has taken so far: the time-budget alarm watches its maximum
            self.put("RunDuration", scope.elapsed_s() * 1000, "Milliseconds", Job=scope.job)
        self.flush()
