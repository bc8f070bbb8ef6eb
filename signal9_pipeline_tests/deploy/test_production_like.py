"""The production deployment, run on one machine and driven through the webserver's GraphQL API.

PostgreSQL holds Dagster's runs, events and schedule state; Redis holds the Alpaca rate
limit that every run shares; the code server, daemon and webserver are separate processes
reading deploy/dagster.yaml (default run launcher in place of ECS) and deploy/workspace.yaml.
The test launches the asset sync, checks lineage, lets the daemon's sensor launch the
pollenation runs, and backfills ohlc_bars as concurrent runs under one shared limit.
"""

from __future__ import annotations

import json
import math
import os
import time
from datetime import date, timedelta

import boto3
import exchange_calendars as xcals
import pytest
import redis
import requests
import yaml

from signal9_devstack.local.stack import free_port
from signal9_pipeline.market_data.days import last_ended_day
from signal9_pipeline.pollenation.sensor import pending_companies
from signal9_pipeline.resources.alpaca_credentials import read_credentials
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.resources.rate_limit import BUCKET_NAME
from signal9_pipeline.tables.assets import AssetsTable
from signal9_pipeline_tests.deploy.deployment import DEPLOY, LOCATION, REPOSITORY, Deployment, write_instance
from signal9_pipeline_tests.support import max_in_any_window, small_universe

pytestmark = [pytest.mark.production_like, pytest.mark.slow]

# Far below Alpaca's 200/min, so that the backfill's requests are more than one window holds
# and the limiter, not the amount of work, sets the pace.
LIMIT_PER_MINUTE = 20
# A single-run backfill makes one run per contiguous range of dates; sessions with a day
# between them make one run each.
TIMEFRAMES = ("1Min",)
DATES = 4
LISTED = 120


def _separate_sessions(n: int) -> list[str]:
    """n recent XNYS sessions, no two on consecutive calendar days."""
    calendar = xcals.get_calendar("XNYS")
    end = last_ended_day()  # the newest date partition that exists now
    picked: list[date] = []
    for session in reversed(calendar.sessions_in_range(end - timedelta(days=30), end)):
        day = session.date()
        if not picked or (picked[-1] - day).days > 1:
            picked.append(day)
    return sorted(d.isoformat() for d in picked[:n])


def _max_overlap(runs: list[dict]) -> int:
    """The most runs that were in progress at one moment."""
    edges = sorted([(r["startTime"], 1) for r in runs] + [(r["endTime"], -1) for r in runs], key=lambda e: (e[0], e[1]))
    best = current = 0
    for _, step in edges:
        current += step
        best = max(best, current)
    return best


@pytest.fixture
def deployment(bars_env, postgres_env, redis_server, sandbox_factory, default_universe, tmp_path):
    universe = small_universe(default_universe, n=LISTED)
    credentials = read_credentials(bars_env["ALPACA_SECRET_ID"], ttl_s=0)
    sandbox = sandbox_factory(universe, api_key=credentials.api_key, secret_key=credentials.secret_key,
                              rate_limit_per_minute=LIMIT_PER_MINUTE)
    bucket = f"signal9-dagster-{tmp_path.name.lower().replace('_', '-')[-20:]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    redis_url = f"redis://127.0.0.1:{redis_server.port}/0"
    redis.Redis.from_url(redis_url).flushdb()
    env = {**os.environ, **bars_env, **postgres_env,
           "DAGSTER_HOME": str(write_instance(tmp_path / "dagster-home")),
           "DAGSTER_S3_BUCKET": bucket, "SIGNAL9_IO_MANAGER_BUCKET": bucket,
           "SIGNAL9_RATE_LIMITER_URL": redis_url, "ALPACA_RATE_LIMIT_PER_MINUTE": str(LIMIT_PER_MINUTE),
           "ALPACA_TRADING_URL": sandbox.url, "ALPACA_DATA_URL": sandbox.url, "SIGNAL9_SANDBOX_URL": sandbox.url,
           "SIGNAL9_INTRADAY_WATCHLIST": "all",
           "ALPACA_FEED": "sip",  # the dense feed (the windows are past), so the backfill spans several windows
           "SIGNAL9_CODE_SERVER_HOST": "127.0.0.1", "SIGNAL9_CODE_SERVER_PORT": str(free_port())}
    deployed = Deployment(env, tmp_path / "logs")
    try:
        deployed.start()
        yield deployed, sandbox, universe
    finally:
        deployed.stop()


def test_production_deployment_syncs_pollenates_and_backfills_under_one_shared_limit(deployment, capsys):
    deployed, sandbox, universe = deployment
    listed = [a for a in universe if a["status"] == "active" and a["tradable"]]

    # The daemon runs every loop the deployment relies on.
    health = deployed.wait_for(lambda: _healthy_daemons(deployed), 120, "the daemon's loops to report healthy")
    assert {"SENSOR", "BACKFILL", "QUEUED_RUN_COORDINATOR", "SCHEDULER", "MONITORING"} <= health

    # Lineage, as the UI's asset graph shows it.
    nodes = {tuple(n["assetKey"]["path"]): {tuple(d["path"]) for d in n["dependencyKeys"]}
             for n in deployed.graphql("{ assetNodes { assetKey { path } dependencyKeys { path } } }")["assetNodes"]}
    assert nodes[("validated_assets",)] == {("alpaca_assets",)}
    assert ("validated_assets",) in nodes[("assets_table",)]
    for downstream in ("ohlc_bars", "corporate_actions", "pollenation_events", "asset_status_events"):
        assert nodes[(downstream,)] == {("assets_table",)}, downstream
    assert _sensor_status(deployed, "new_symbols_sensor") == "RUNNING"

    # The asset sync, launched as from the UI, queued, dequeued by the daemon, run by the code server.
    started = time.monotonic()
    sync_run = deployed.launch_job("asset_sync_job")
    [finished] = deployed.wait_for_runs([sync_run], 240)
    assert finished["status"] == "SUCCESS", deployed.run_failure_text(sync_run)
    dynamodb = DynamoDBResource.from_settings()
    items = list(AssetsTable(dynamodb).companies())
    # inactive, never-seen assets are not stored
    assert sorted(i["symbol"] for i in items) == sorted(a["symbol"] for a in listed)

    # The daemon's sensor sees the new symbols and launches pollenation runs until none is pending.
    def pollenated() -> list[dict] | None:
        runs = deployed.runs(tags={"signal9/kind": "pollenation"})
        done = runs and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs)
        return runs if done and not pending_companies(dynamodb) else None
    synced = time.monotonic()
    pollenation_runs = deployed.wait_for(pollenated, 300, "the sensor's pollenation runs to leave no symbol pending",
                                         every_s=3)
    pollenation_done = time.monotonic()
    assert {r["status"] for r in pollenation_runs} == {"SUCCESS"}
    assert len(pollenation_runs) >= math.ceil(len(listed) / 100)

    # A backfill over dates x timeframes as concurrent runs, all under the shared limit.
    dates = _separate_sessions(DATES)
    sandbox_stats_before = len(_sandbox_requests(sandbox))
    launched_at = time.time()
    backfill = deployed.launch_backfill("ohlc_bars", [f"{d}|{tf}" for d in dates for tf in TIMEFRAMES])
    runs = deployed.wait_for(lambda: _backfill_finished(deployed, backfill), 600, f"backfill {backfill} to finish",
                             every_s=3)
    backfilled = time.monotonic()
    failures = {r["runId"]: deployed.run_failure_text(r["runId"]) for r in runs if r["status"] != "SUCCESS"}
    in_flight = _max_overlap(runs)

    requests_made = _sandbox_requests(sandbox)
    backfill_requests = requests_made[sandbox_stats_before:]
    busiest = max_in_any_window([r["t"] for r in requests_made])
    statuses = {r["status"] for r in requests_made}
    with capsys.disabled():
        print(f"\nproduction-like backfill: {len(runs)} runs, at most {in_flight} in flight at once; "
              f"{len(backfill_requests)} Alpaca requests; "
              f"busiest 60 s window {busiest} of {LIMIT_PER_MINUTE} allowed; "
              f"statuses {sorted(statuses)}; sync {synced - started:.0f} s, "
              f"pollenation {pollenation_done - synced:.0f} s, backfill {backfilled - pollenation_done:.0f} s; "
              f"runs started {min(r['startTime'] for r in runs) - launched_at:.0f} s "
              f"to {max(r['startTime'] for r in runs) - launched_at:.0f} s after the backfill was launched")
    assert not failures, failures
    assert len(runs) == len(dates)
    # Runs in flight together, all drawing on the one limit. How many overlap depends on how fast a busy machine
    # starts run processes (the four start 10-25 s apart), so two at once is what the test can demand.
    assert in_flight >= 2
    assert busiest <= LIMIT_PER_MINUTE
    assert statuses == {200}, "the sandbox refused requests: the runs went over the shared limit"
    assert len(backfill_requests) > LIMIT_PER_MINUTE, "the backfill fitted in one window, so the limit was never tested"
    # The limit lived in Redis, where every run found it.
    assert redis.Redis.from_url(deployed.env["SIGNAL9_RATE_LIMITER_URL"]).exists(f"signal9:{BUCKET_NAME}")

    # Every company-day of the backfill is stored.
    stored = {}
    for item in dynamodb.scan(dynamodb.market_data_table_name()):
        company, timeframe = item["series"].rsplit("#", 1)
        stored.setdefault((item["day"], timeframe), set()).add(company)
    listed_ids = {a["id"] for a in listed}
    for day in dates:
        assert listed_ids <= stored.get((day, "1Min"), set()), day

    # Step outputs and compute logs went to S3, where a run task on another host finds them.
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=deployed.env["DAGSTER_S3_BUCKET"]).get(
        "Contents", [])]
    assert any(k.startswith("dagster/io/") for k in keys)
    assert any(k.startswith("dagster/compute-logs/") for k in keys)


def _healthy_daemons(deployed: Deployment) -> set[str] | None:
    statuses = deployed.graphql("{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }")
    daemons = statuses["instance"]["daemonHealth"]["allDaemonStatuses"]
    required = [d for d in daemons if d["required"]]
    return ({d["daemonType"] for d in daemons if d["healthy"]} if required and all(d["healthy"] for d in required)
            else None)


def _sensor_status(deployed: Deployment, name: str) -> str:
    data = deployed.graphql("""query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
        __typename ... on Sensor { sensorState { status } } } }""",
                            {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
                                          "sensorName": name}})
    return data["sensorOrError"]["sensorState"]["status"]


def _backfill_finished(deployed: Deployment, backfill_id: str) -> list[dict] | None:
    status = deployed.graphql("""query($id: String!) { partitionBackfillOrError(backfillId: $id) {
        ... on PartitionBackfill { status } } }""", {"id": backfill_id})["partitionBackfillOrError"]["status"]
    runs = deployed.runs(tags={"dagster/backfill": backfill_id})
    done = runs and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs)
    return runs if status != "REQUESTED" and done else None


def _sandbox_requests(sandbox) -> list[dict]:
    stats = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=10).json()["requests"]
    return [r for r in stats if not r["path"].startswith("/_sandbox")]


def test_instance_file_is_the_deployed_one_but_for_the_launcher(tmp_path):
    deployed = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    tested = yaml.safe_load((write_instance(tmp_path) / "dagster.yaml").read_text())
    assert {k: v for k, v in deployed.items() if k != "run_launcher"} == tested
    assert json.dumps(tested).count("EcsRunLauncher") == 0
