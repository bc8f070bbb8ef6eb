"""No Alpaca credential leaves Secrets Manager: not in logs, the event log, events, metrics, tables or error texts.

The key and secret live in one Secrets Manager secret and may travel only in the `APCA-*` headers of
requests to Alpaca. The test runs the whole pipeline with credentials that appear nowhere else - the
asset sync, a `new_symbols_sensor` tick, the `pollenation_job` run it asks for, an `ohlc_bars`
partition, and runs made to fail (a refused bar, a wrong secret) with their alerts - at DEBUG logging
(botocore included), captures every byte those runs produced, and searches all of it for the
credentials in plain, URL-encoded, JSON, hex and base64 (every alignment) forms. A canary planted in
each channel the same way real data gets there proves that the search finds what is there.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import boto3
import dagster as dg
import pytest
import requests

from signal9_devstack.local.provision import (
    ASSETS_INDEXES,
    TABLE_KEYS,
    ensure_secret,
    ensure_table,
)
from signal9_pipeline.alerting.sensor import pipeline_run_failure_alert
from signal9_pipeline.credentials import AlpacaCredentials
from signal9_pipeline.resources.alerts import AlertsResource
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.resources.events import Event, EventsResource
from signal9_pipeline.resources.metrics import publisher_for
from signal9_pipeline.tables.assets import AssetsTable
from signal9_pipeline_tests.support import (
    EventTap,
    drive_sensor,
    materialize_bars,
    run_sync,
    small_universe,
)

API_KEY = "PKLEAKPROBE7Q2W9XZ3M"
SECRET_KEY = "sk/LeakProbe+Zq81=vT3xN9c"
WRONG_SECRET = "sk/WrongProbe+Hh42=pL7yK1d"  # what a misconfigured deployment holds: must not leak either
CANARY = "cn/CanaryProbe+Rr55=wQ2zM8e"  # same alphabet as the secrets, planted on purpose
CREDENTIALS = {"api key": API_KEY, "secret key": SECRET_KEY, "wrong secret key": WRONG_SECRET}
DAY = "2024-06-03"


# --- the search --------------------------------------------------------------------------------------
def encoded_forms(value: str) -> dict[str, bytes]:
    """Every way `value` could show up in captured bytes, down to a run of base64 inside a longer blob."""
    raw = value.encode()
    forms = {"plain": raw, "json": json.dumps(value)[1:-1].encode(), "hex": raw.hex().encode()}
    for name, encoded in (("url-encoded", quote(value, safe="")), ("url-encoded path", quote(value)),
                          ("form-encoded", quote_plus(value)), ("form-encoded path", quote_plus(value, safe="/"))):
        forms[name] = encoded.encode()
        forms[f"{name}, lowercase escapes"] = re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), encoded).encode()
    for shift in range(3):  # the three alignments of value inside base64 of a longer text
        first, last = -(-8 * shift // 6), 8 * (shift + len(raw)) // 6  # characters that depend on value alone
        forms[f"base64 at offset {shift}"] = base64.b64encode(b"\0" * shift + raw)[first:last]
        forms[f"url-safe base64 at offset {shift}"] = base64.urlsafe_b64encode(b"\0" * shift + raw)[first:last]
    return forms


def findings(needles: dict[str, str], channels: dict[str, bytes]) -> list[tuple[str, str, str]]:
    """(needle, form, channel) for every form of every needle found in a channel."""
    return [(name, form, channel) for name, value in needles.items() for form, pattern in encoded_forms(value).items()
            for channel, data in channels.items() if pattern in data]


@pytest.mark.parametrize("embed", [
    lambda v: f"header {v} trailer".encode(),
    lambda v: quote(f"Probe={v}&x=1").encode(),
    lambda v: re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(f"Probe={v}", safe="")).encode(),
    lambda v: quote_plus(json.dumps({"probe": v})).encode(),
    lambda v: json.dumps({"probe": v}).encode(),
    lambda v: f"0x{('ab' + v).encode().hex()}".encode(),
    *[lambda v, pad=pad: base64.b64encode(f"{pad}{v}{pad}".encode()) for pad in ("", "a", "ab", "abc")],
    lambda v: base64.urlsafe_b64encode(f"xy{v}".encode()),
], ids=["plain", "url", "url-lowercase", "form", "json", "hex", "base64+0", "base64+1", "base64+2", "base64+3",
        "urlsafe-base64"])
def test_the_search_finds_a_secret_in_each_encoding(embed):
    assert findings({"secret": SECRET_KEY}, {"buffer": embed(SECRET_KEY)}) != []
    assert findings({"secret": SECRET_KEY}, {"buffer": embed(CANARY)}) == []


# --- capturing what the runs produce -------------------------------------------------------------------
class AwsRequestBodies:
    """The URL and body of every AWS request sent by clients created while registered (metrics, events, SNS, ...)."""

    def __init__(self) -> None:
        self.captured: list[bytes] = []

    # Writing the secret itself: the one request whose body is meant to hold the credentials.
    STORE_OF_THE_SECRET = ("before-send.secrets-manager.CreateSecret", "before-send.secrets-manager.PutSecretValue")

    def __call__(self, request, event_name: str = "", **kwargs) -> None:
        if event_name in self.STORE_OF_THE_SECRET:
            self.captured.append(f"{event_name} (body not kept)".encode())
            return
        body = request.body if isinstance(request.body, (bytes, str)) else b""
        head = f"{event_name} {request.url}\n".encode()  # before-send.<service>.<operation>
        self.captured.append(head + (body.encode() if isinstance(body, str) else body))

    def bodies(self) -> bytes:
        return b"\n".join(self.captured)


@pytest.fixture
def aws_requests() -> Iterator[AwsRequestBodies]:
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    capture = AwsRequestBodies()
    boto3.DEFAULT_SESSION.events.register("before-send", capture, unique_id="secret-scan")
    yield capture
    boto3.DEFAULT_SESSION.events.unregister("before-send", unique_id="secret-scan")


@pytest.fixture
def leak_probe_env(stack_env, sandbox_factory, default_universe, monkeypatch, tmp_path) -> dict[str, str]:
    """The local stack's AWS with a sandbox, secret, tables, namespace and rate limit of the test's own."""
    universe = small_universe(default_universe, n=8)[:12]
    universe[0] = universe[0] | {"name": f"Probe {CANARY} Inc"}  # data stored verbatim: the canary of the tables
    server = sandbox_factory(universe, api_key=API_KEY, secret_key=SECRET_KEY, rate_limit_per_minute=100_000)
    probe = uuid.uuid4().hex[:10]
    env = {"ALPACA_TRADING_URL": server.url, "ALPACA_DATA_URL": server.url, "SIGNAL9_SANDBOX_URL": server.url,
           "ALPACA_SECRET_ID": f"signal9/leak-probe-{probe}", "SIGNAL9_METRICS_NAMESPACE": f"Signal9/LeakProbe{probe}",
           "SIGNAL9_ASSETS_TABLE": f"signal9-assets-leak-{probe}",
           "SIGNAL9_MARKET_DATA_TABLE": f"signal9-bars-leak-{probe}",
           "SIGNAL9_RATE_LIMITER_URL": f"sqlite:///{tmp_path / 'limiter.sqlite'}",
           "SIGNAL9_POLLENATION_HISTORY_DAYS": "10"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ensure_table(env["SIGNAL9_ASSETS_TABLE"], *TABLE_KEYS["assets"], indexes=ASSETS_INDEXES)
    ensure_table(env["SIGNAL9_MARKET_DATA_TABLE"], *TABLE_KEYS["market_data"])
    return {**stack_env, **env}


# --- the runs ---------------------------------------------------------------------------------------------
def alert_for(instance: dg.DagsterInstance, run_id: str) -> None:
    """What `pipeline_run_failure_alert` sends for a failed run: an SNS message and a pipelineRunFailed event."""
    failure = next(e.dagster_event for e in instance.all_logs(run_id)
                   if e.dagster_event and e.dagster_event.event_type_value in ("PIPELINE_FAILURE", "RUN_FAILURE"))
    context = dg.build_run_status_sensor_context(
        sensor_name="pipeline_run_failure_alert", dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id), dagster_event=failure,
        resources={"alerts": AlertsResource.from_settings(),
                   "events": EventsResource.from_settings()}).for_run_failure()
    pipeline_run_failure_alert(context)


def error_texts(results: list[dg.ExecuteInProcessResult]) -> list[str]:
    return [e.event_specific_data.error.to_string() for r in results for e in r.all_events if e.is_step_failure]


def run_with_a_wrong_secret(env: dict[str, str], instance: dg.DagsterInstance, monkeypatch) -> tuple[str, str]:
    """A sync whose secret holds the right key with a wrong secret key: its run id, its exception as Python prints
    it."""
    from signal9_pipeline.definitions import defs

    monkeypatch.setenv("ALPACA_SECRET_ID", env["ALPACA_SECRET_ID"] + "-wrong")
    ensure_secret(env["ALPACA_SECRET_ID"] + "-wrong", AlpacaCredentials(API_KEY, WRONG_SECRET))
    try:
        with pytest.raises(Exception) as raised:  # any failure: its whole text is what is scanned
            defs.resolve_job_def("asset_sync_job").execute_in_process(instance=instance)
    finally:
        monkeypatch.setenv("ALPACA_SECRET_ID", env["ALPACA_SECRET_ID"])
    run = instance.get_runs(dg.RunsFilter(job_name="asset_sync_job", statuses=[dg.DagsterRunStatus.FAILURE]),
                            limit=1)[0]
    return run.run_id, "".join(traceback.format_exception(raised.value))


def plant_canaries(instance: dg.DagsterInstance, run_id: str, env: dict[str, str]) -> None:
    """The canary into each channel by the route real data takes there."""
    print(f"probe {CANARY}")
    logging.getLogger("botocore.endpoint").debug("probe %s", CANARY)
    instance.report_engine_event(f"probe {CANARY}", instance.get_run_by_id(run_id))
    publisher = publisher_for(env["SIGNAL9_METRICS_NAMESPACE"])
    publisher.put("SecretScanProbe", 1, Probe=CANARY)
    assert publisher.flush() == 1
    assert EventsResource.from_settings().publish([Event("secretScanProbe", {"probe": CANARY},
                                                         f"probe-{uuid.uuid4()}")]) == []


def instance_files(root: Path) -> bytes:
    return b"\n".join(path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file())


def event_log(instance: dg.DagsterInstance) -> bytes:
    runs = instance.get_runs()
    return "\n".join(dg.serialize_value(entry) for run in runs for entry in instance.all_logs(run.run_id)).encode()


def table_items(env: dict[str, str]) -> bytes:
    dynamodb = DynamoDBResource.from_settings()
    items = [*dynamodb.scan(env["SIGNAL9_ASSETS_TABLE"]), *dynamodb.scan(env["SIGNAL9_MARKET_DATA_TABLE"])]
    return "\n".join(map(repr, items)).encode()


def test_no_credential_reaches_any_output_of_the_whole_pipeline(leak_probe_env, aws_requests, monkeypatch, tmp_path,
                                                               capfd, caplog, ledger):
    env = leak_probe_env
    caplog.set_level(logging.DEBUG)
    ensure_secret(env["ALPACA_SECRET_ID"], AlpacaCredentials(API_KEY, SECRET_KEY))  # provisioning is scanned too
    tap = EventTap(env["SIGNAL9_EVENT_BUS"], f"leak-probe-{uuid.uuid4().hex[:8]}")
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        sync = run_sync(instance=instance)
        pollenated = drive_sensor(instance)
        bars = materialize_bars("1Day", DAY, DAY, instance=instance)
        assert sync.success and pollenated and all(r.success for r in pollenated) and bars.success
        symbol = min(i["symbol"] for i in AssetsTable(DynamoDBResource.from_settings()).views())
        requests.post(f"{env['SIGNAL9_SANDBOX_URL']}/_sandbox/faults", json={"invalid_bar_symbols": [symbol]},
                      timeout=10).raise_for_status()
        held_back = materialize_bars("1Day", DAY, DAY, instance=instance)  # succeeds, naming the bar it held back
        requests.post(f"{env['SIGNAL9_SANDBOX_URL']}/_sandbox/reset", timeout=10).raise_for_status()
        refused_bar = materialize_bars("1Min", DAY, DAY, watchlist="ZZZZQ", instance=instance)  # an unknown symbol
        refused_keys, wrong_secret = run_with_a_wrong_secret(env, instance, monkeypatch)
        assert held_back.success and "price not positive" in held_back.asset_materializations_for_node(
            "ohlc_bars")[0].metadata["held_back"].value
        assert not refused_bar.success and "AlpacaAuthError" in wrong_secret
        alert_for(instance, refused_bar.run_id)
        alert_for(instance, refused_keys)
        plant_canaries(instance, sync.run_id, env)
        delivered = tap.drain()
        channels = {
            "stdout and stderr": "".join(capfd.readouterr()).encode(),
            "log records (DEBUG, botocore included)": "\n".join(logging.Formatter().format(r)
                                                                for r in caplog.records).encode(),
            "Dagster event log": event_log(instance),
            "Dagster instance files": instance_files(tmp_path / "dagster"),
            "AWS request bodies (CloudWatch, EventBridge, SNS, Secrets Manager, ...)": aws_requests.bodies(),
            "EventBridge deliveries": json.dumps(delivered).encode(),
            "DynamoDB items": table_items(env),
        }
        errors = "\n".join([wrong_secret, *error_texts([refused_bar])]).encode()
    assert {e["detail-type"] for e in delivered} >= {"assetSyncComplete", "pollenationNeeded", "pipelineRunFailed"}
    assert ({e["detail"]["errorType"] for e in delivered if e["detail-type"] == "pipelineRunFailed"}
            == {"UnknownSymbolError", "AlpacaAuthError"})
    sent_to_aws = channels["AWS request bodies (CloudWatch, EventBridge, SNS, Secrets Manager, ...)"]
    assert b"PutMetricData" in sent_to_aws and b"AlpacaApiCalls" in sent_to_aws  # the runs' own metrics were captured
    assert b"UnknownSymbolError" in errors and b"AlpacaAuthError" in errors  # the failures really are in it
    assert b"price not positive" in channels["Dagster event log"]  # and the held-back bar's reason
    assert {channel for _, _, channel in findings({"canary": CANARY}, channels)} == set(channels)
    leaks = findings(CREDENTIALS, {**channels, "exception texts of failed runs": errors})
    assert leaks == [], leaks
    controls = {**{channel: "a planted canary is found" for channel in channels},
                "exception texts of failed runs": "the failures' own texts are in it"}
    for channel, data in {**channels, "exception texts of failed runs": errors}.items():
        ledger.record("secrets", f"{channel} scanned for the Alpaca key and secret ({len(data):,} bytes, "
                      f"{len(encoded_forms(SECRET_KEY))} encodings)", f"no credential found; {controls[channel]}",
                      lost=0)
