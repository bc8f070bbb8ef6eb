"""AWS misbehaving under the whole pipeline: partial and throttled writes, lost secrets, events, metrics.

Faults are injected with botocore's own event hooks on the clients the
pipeline really uses (dynalite and moto behind them): `BatchWriteItem`
answering part of a batch as `UnprocessedItems` or being throttled, Secrets
Manager unreachable, `PutEvents` rejecting some entries, CloudWatch down. Each
must end in the tables a fault-free run writes, or in a typed failure that
loses nothing: items written on retry, events still owed kept pending, and
never a run failed for metrics.
"""

from __future__ import annotations

import collections
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.handlers
import dagster as dg
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError

from signal9_devstack.local.stack import free_port
from signal9_pipeline.pollenation.sensor import pending_companies
from signal9_pipeline.resources import metrics as metrics_module
from signal9_pipeline.resources.dynamodb import BATCH_SIZE, DynamoDBResource
from signal9_pipeline.settings import Settings
from signal9_pipeline.tables.assets import EVENTS_MARKER
from signal9_pipeline_tests.reliability.faults import (
    POLLENATED,
    failure_cause,
    pipeline_universe,
    point_alpaca_at,
    pollenate,
    run_pipeline,
    step_failure,
    steps_retried,
)
from signal9_pipeline_tests.reliability.tables import comparable, items_lost, scan_tables
from signal9_pipeline_tests.support import EventTap, run_sync

Register = Callable[[str, Callable[..., Any]], None]


# --- hooking the pipeline's own boto3 clients ------------------------------------------------------
@pytest.fixture
def botocore_hooks(alpaca, monkeypatch) -> Iterator[Register]:
    """Register a botocore event handler on every AWS client the pipeline uses during the test.

    Three kinds of client: the DynamoDB resource's client, which the process's threads share (already built,
    so the handler is registered on it), clients built later from new sessions (Secrets Manager's), which
    register botocore's BUILTIN_HANDLERS, and boto3's default session (EventBridge, CloudWatch).
    """
    current = DynamoDBResource.from_settings().client()
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    default_events = boto3.DEFAULT_SESSION.events
    monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS", list(botocore.handlers.BUILTIN_HANDLERS))
    registered: list[tuple[str, Callable[..., Any]]] = []

    def register(event: str, handler: Callable[..., Any]) -> None:
        current.meta.events.register(event, handler)
        default_events.register(event, handler)
        botocore.handlers.BUILTIN_HANDLERS.append((event, handler))
        registered.append((event, handler))

    yield register
    for event, handler in registered:
        current.meta.events.unregister(event, handler)
        default_events.unregister(event, handler)


def fabricated(status: int, parsed: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
    """What `before-call` returns instead of sending: the HTTP answer and its parsed body."""
    return AWSResponse("http://injected", status, {}, None), {**parsed, "ResponseMetadata": {"HTTPStatusCode": status}}


class _Body:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


class Budget:
    """How many more times a fault may be injected; thread-safe (the bars writers write concurrently)."""

    def __init__(self, times: int):
        self.left, self.used = times, 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.left == 0:
                return False
            self.left, self.used = self.left - 1, self.used + 1
            return True


# --- DynamoDB: partial batches and throttling --------------------------------------------------------
class UnprocessedItems:
    """BatchWriteItem answering the first attempt of every full batch with half of it as `UnprocessedItems`.

    The unprocessed half is taken out of the request before it is sent, so DynamoDB really writes only
    the first half: an item the pipeline does not retry is missing from the table.
    """

    def __init__(self):
        self.items: collections.Counter[str] = collections.Counter()  # items answered unprocessed, by table
        self._lock = threading.Lock()

    def hold_back(self, params: dict, context: dict, **_: Any) -> None:
        ((table, requests),) = params["RequestItems"].items()
        if len(requests) < BATCH_SIZE:  # a retry of what was held back, or a batch's short tail
            return
        half = len(requests) // 2
        params["RequestItems"] = {table: requests[:half]}
        context["signal9_unprocessed"] = {table: requests[half:]}
        with self._lock:
            self.items[table] += len(requests) - half

    def answer(self, parsed: dict, context: dict, **_: Any) -> None:
        for table, requests in context.get("signal9_unprocessed", {}).items():
            parsed.setdefault("UnprocessedItems", {}).setdefault(table, []).extend(requests)

    def install(self, register: Register) -> None:
        register("before-parameter-build.dynamodb.BatchWriteItem", self.hold_back)
        register("after-call.dynamodb.BatchWriteItem", self.answer)


class Throttled:
    """Writes throttled (the sync's BatchWriteItem, the bars' conditional PutItem), after the SDK's own retries or
    inside them.

    `after_sdk_retries`: the call fails with the error (a `before-call` answer: nothing sent, nothing
    written), as when every one of botocore's attempts was throttled. Otherwise the HTTP answer is the
    throttle (`before-send`) and botocore's retry handler sees it like DynamoDB's own.
    """

    def __init__(self, code: str, calls: int, after_sdk_retries: bool, operation: str):
        self.code, self.budget, self.after_sdk_retries, self.operation = (code, Budget(calls), after_sdk_retries,
                                                                          operation)

    def throttle_call(self, **_: Any) -> tuple[AWSResponse, dict] | None:
        if not self.budget.take():
            return None
        return fabricated(400, {"Error": {"Code": self.code,
                                          "Message": "Rate of requests exceeds the allowed throughput."}})

    def throttle_send(self, request: Any, **_: Any) -> AWSResponse | None:
        if not self.budget.take():
            return None
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{self.code}", "message": "Rate exceeded"})
        return AWSResponse(request.url, 400, {"x-amzn-RequestId": uuid.uuid4().hex}, _Body(body.encode()))

    def install(self, register: Register) -> None:
        if self.after_sdk_retries:
            register(f"before-call.dynamodb.{self.operation}", self.throttle_call)
        else:
            register(f"before-send.dynamodb.{self.operation}", self.throttle_send)


def assert_equals_fault_free(results: list[dg.ExecuteInProcessResult], reference: dict, ledger, fault: str,
                             times: int) -> None:
    tables = comparable(scan_tables())
    lost = items_lost(reference, tables)
    ok = all(r.success for r in results) and tables == reference
    ledger.record("aws", fault, "tables equal a fault-free run" if ok else "differs from a fault-free run", lost=lost,
                  times=times)
    assert [r.success for r in results] == [True, True, True]
    assert times >= 1  # the fault really happened
    assert tables == reference and lost == 0


def test_unprocessed_items_are_written_on_retry(botocore_hooks, reference, ledger):
    fault = UnprocessedItems()
    fault.install(botocore_hooks)
    results = run_pipeline()
    # The sync's writer; bars buckets go out as conditional PutItems, their few manifests in one short batch.
    assert set(fault.items) == {Settings.from_env().assets_table}
    assert_equals_fault_free(results, reference, ledger,
                             "BatchWriteItem returns half of every full batch as UnprocessedItems",
                             sum(fault.items.values()))


@pytest.mark.parametrize("operation,code,after_sdk_retries,calls", [
    ("BatchWriteItem", "ProvisionedThroughputExceededException", True, 5),
    ("BatchWriteItem", "ThrottlingException", False, 2),
    ("PutItem", "ProvisionedThroughputExceededException", True, 5),
    ("PutItem", "ThrottlingException", False, 2)])
def test_throttled_writes_are_retried_until_every_item_is_written(operation, code, after_sdk_retries, calls,
                                                                  botocore_hooks, reference, ledger):
    fault = Throttled(code, calls=calls, after_sdk_retries=after_sdk_retries, operation=operation)
    fault.install(botocore_hooks)
    results = run_pipeline()
    layer = "after botocore's retries ran out" if after_sdk_retries else "inside botocore's retries"
    assert_equals_fault_free(results, reference, ledger, f"{operation} throttled ({code}, {layer})", fault.budget.used)
    assert fault.budget.used == calls


# --- Secrets Manager unavailable --------------------------------------------------------------------
class SecretsManagerOutage:
    """GetSecretValue failing as when the endpoint cannot be reached, after the SDK's own retries."""

    def __init__(self):
        self.down, self.refused = True, 0

    def refuse(self, **_: Any) -> None:
        if self.down:
            self.refused += 1
            raise EndpointConnectionError(endpoint_url="https://secretsmanager.us-east-1.amazonaws.com/")


def test_secrets_manager_unavailable_fails_typed_and_the_next_run_catches_up(alpaca, botocore_hooks, default_universe,
                                                                            monkeypatch, ledger):
    universe = pipeline_universe(default_universe)
    alpaca.put_universe(universe[:-60])  # ten listings fewer than the next day's list
    assert run_sync().success
    before = scan_tables()
    alpaca.put_universe(universe)
    point_alpaca_at(alpaca.server, monkeypatch)  # a secret not read yet in this process: no cached credentials
    outage = SecretsManagerOutage()
    botocore_hooks("before-call.secrets-manager.GetSecretValue", outage.refuse)
    failed = run_sync()
    after = scan_tables()
    error, message = failure_cause(failed)
    ledger.record("aws", "Secrets Manager unreachable (credentials not cached)",
                  f"{error}, tables untouched" if after == before else "tables changed", lost=items_lost(before, after),
                  times=outage.refused)
    assert not failed.success and step_failure(failed).step_key == "alpaca_assets"
    assert (error == "CredentialsError" and "Secrets Manager unreachable" in message
            and "EndpointConnectionError" in message)
    assert outage.refused == 1  # a permanent failure: no step retries hammering Secrets Manager
    assert after == before
    outage.down = False
    assert run_sync().success
    listed = {i["symbol"] for i in scan_tables()["assets"].values() if i.get("status") == "active"}
    assert {a["symbol"] for a in universe[-60:] if a["status"] == "active" and a["tradable"]} <= listed


# --- EventBridge: part of a PutEvents batch rejected --------------------------------------------------
class RejectedEntries:
    """PutEvents answering the entries of some symbols with an ErrorCode (FailedEntryCount > 0).

    A rejected entry is taken out of the request, so EventBridge never receives it; each symbol's entry is
    rejected the first `times` times it is sent.
    """

    def __init__(self, symbols: set[str], times: int):
        self.symbols, self.times = symbols, times
        self.rejections: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def _rejects(self, entry: dict) -> bool:
        detail = json.loads(entry["Detail"])
        # a company; a symbol's status
        symbol = detail.get("alpacaId") if detail.get("assetId") else detail.get("symbol")
        with self._lock:
            if symbol not in self.symbols or self.rejections[symbol] >= self.times:
                return False
            self.rejections[symbol] += 1
            return True

    def recover(self) -> None:
        with self._lock:
            self.times = 0

    def drop(self, params: dict, context: dict, **_: Any) -> None:
        rejected = [i for i, entry in enumerate(params["Entries"]) if self._rejects(entry)]
        if not rejected:
            return
        context["signal9_rejected"] = rejected
        kept = [entry for i, entry in enumerate(params["Entries"]) if i not in rejected]
        if kept:
            params["Entries"] = kept
        else:
            context["signal9_reject_all"] = True

    def answer_without_sending(self, context: dict, **_: Any) -> tuple[AWSResponse, dict] | None:
        return fabricated(200, {"FailedEntryCount": 0, "Entries": []}) if context.get("signal9_reject_all") else None

    def answer(self, parsed: dict, context: dict, **_: Any) -> None:
        rejected = set(context.get("signal9_rejected", []))
        if not rejected:
            return
        accepted = iter(parsed.get("Entries", []))
        failure = {"ErrorCode": "InternalFailure", "ErrorMessage": "Internal service error"}
        total = len(parsed.get("Entries", [])) + len(rejected)
        parsed["Entries"] = [dict(failure) if i in rejected else next(accepted) for i in range(total)]
        parsed["FailedEntryCount"] = parsed.get("FailedEntryCount", 0) + len(rejected)

    def install(self, register: Register) -> None:
        register("before-parameter-build.eventbridge.PutEvents", self.drop)
        register("before-call.eventbridge.PutEvents", self.answer_without_sending)
        register("after-call.eventbridge.PutEvents", self.answer)


def delivered_ids(tap: EventTap, detail_type: str, key: str) -> collections.Counter[str]:
    """How many times consumers received each symbol's event of `detail_type`."""
    return collections.Counter(e["detail"][key] for e in tap.drain() if e["detail-type"] == detail_type)


@pytest.mark.parametrize("times", [1, 1_000], ids=["rejected once", "rejected on every attempt"])
def test_rejected_pollenation_events_are_retried_or_stay_pending(times, alpaca, botocore_hooks, ledger):
    tap = EventTap(Settings.from_env().event_bus, f"faults-{uuid.uuid4().hex[:10]}", ["pollenationNeeded"])
    assert run_sync().success
    symbols = pending_companies(DynamoDBResource.from_settings())[:POLLENATED]  # asset ids
    fault = RejectedEntries(set(symbols[::3]), times)
    fault.install(botocore_hooks)
    first = pollenate(symbols)
    still_pending = sorted(set(pending_companies(DynamoDBResource.from_settings())) & set(symbols))
    fault.recover()
    second = pollenate(still_pending) if still_pending else None
    received = delivered_ids(tap, "pollenationNeeded", "alpacaId")
    lost = len(set(symbols) - set(received))
    outcome = ("retried, each event delivered once" if first.success
               else "run fails naming the symbols, they stay pending; the next run delivers them")
    ledger.record("aws", f"PutEvents rejects pollenationNeeded entries ({'once' if times == 1 else 'always'})",
                  outcome, lost=lost, times=sum(fault.rejections.values()))
    assert sum(fault.rejections.values()) >= len(fault.symbols)
    if times == 1:
        assert first.success and still_pending == [] and second is None
    else:
        message = step_failure(first).event_specific_data.error.message
        assert not first.success and still_pending == sorted(fault.symbols)
        assert all(s in message for s in fault.symbols) and "stay pending" in message
        assert second is not None and second.success
    assert received == collections.Counter(symbols)  # every symbol's event exactly once: nothing lost, nothing doubled
    assert not set(pending_companies(DynamoDBResource.from_settings())) & set(symbols)


def test_rejected_status_events_stay_in_their_items_until_published(alpaca, botocore_hooks, default_universe, ledger):
    tap = EventTap(Settings.from_env().event_bus, f"faults-{uuid.uuid4().hex[:10]}", ["assetStatusChanged"])
    universe = pipeline_universe(default_universe)
    assert run_sync().success
    delisted = [a["symbol"] for a in universe[:6]]
    alpaca.put_universe(universe[6:])
    fault = RejectedEntries(set(delisted[:2]), times=1_000)
    fault.install(botocore_hooks)
    failed = run_sync()
    owing = {i["symbol"] for i in scan_tables()["assets"].values() if i.get(EVENTS_MARKER) and i.get("pending_events")}
    fault.recover()
    caught_up = run_sync()
    received = delivered_ids(tap, "assetStatusChanged", "symbol")
    ledger.record("aws", "PutEvents rejects assetStatusChanged entries on every attempt",
                  "run fails; the events stay in their items and the next sync publishes them",
                  lost=len(set(delisted) - set(received)), times=sum(fault.rejections.values()))
    assert not failed.success and step_failure(failed).step_key == "asset_status_events"
    assert owing == set(delisted[:2])
    assert caught_up.success
    assert received == collections.Counter(delisted)
    assert not any(i.get("pending_events") for i in scan_tables()["assets"].values())


# --- CloudWatch down ------------------------------------------------------------------------------
def test_cloudwatch_down_never_fails_a_run(alpaca, reference, monkeypatch, ledger):
    namespace = f"Signal9/Faults-{uuid.uuid4().hex[:8]}"  # a publisher of its own, built while CloudWatch is down
    monkeypatch.setenv("SIGNAL9_METRICS_NAMESPACE", namespace)
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", f"http://127.0.0.1:{free_port()}")
    results = run_pipeline()
    failures = metrics_module.publisher_for(namespace).failures
    tables = comparable(scan_tables())
    ledger.record("aws", "CloudWatch unreachable (PutMetricData fails)",
                  "runs succeed, tables equal a fault-free run" if all(r.success for r in results) else "a run failed",
                  lost=items_lost(reference, tables), times=failures)
    assert [r.success for r in results] == [True, True, True] and not steps_retried(results)
    assert failures >= 3  # every run's metrics were dropped, and none of them failed for it
    assert tables == reference
