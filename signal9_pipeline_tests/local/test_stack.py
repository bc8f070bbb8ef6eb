"""The local stack: start, provision, persist, stop - and fail clearly, with nothing left running."""

import json
import os

import boto3
import pytest

from signal9_devstack.local import stack
from signal9_devstack.local.provision import ProvisionError, ensure_secret, provision
from signal9_pipeline.credentials import AlpacaCredentials
from signal9_pipeline.settings import Settings


def test_up_writes_every_setting_and_provisions(stack_env):
    for key in ("ALPACA_TRADING_URL", "ALPACA_DATA_URL", "ALPACA_SECRET_ID", "AWS_ENDPOINT_URL",
                "AWS_ENDPOINT_URL_DYNAMODB", "AWS_DEFAULT_REGION", "SIGNAL9_ASSETS_TABLE", "SIGNAL9_MARKET_DATA_TABLE",
                "SIGNAL9_EVENT_BUS", "DAGSTER_HOME"):
        assert stack_env[key].startswith("http://127.0.0.1:") or key not in ("ALPACA_TRADING_URL", "AWS_ENDPOINT_URL")
    assert stack.read_env(stack.Path(stack_env["SIGNAL9_HOME"])) == stack_env
    dynamodb = boto3.client("dynamodb")
    assets = dynamodb.describe_table(TableName=stack_env["SIGNAL9_ASSETS_TABLE"])["Table"]
    assert assets["KeySchema"] == [{"AttributeName": "asset_id", "KeyType": "HASH"}]
    bars = dynamodb.describe_table(TableName=stack_env["SIGNAL9_MARKET_DATA_TABLE"])["Table"]
    assert bars["KeySchema"] == [{"AttributeName": "series", "KeyType": "HASH"},
                                 {"AttributeName": "day", "KeyType": "RANGE"}]
    assert (boto3.client("events").describe_event_bus(Name=stack_env["SIGNAL9_EVENT_BUS"])["Name"]
            == stack_env["SIGNAL9_EVENT_BUS"])
    secret = json.loads(boto3.client("secretsmanager").get_secret_value(
        SecretId=stack_env["ALPACA_SECRET_ID"])["SecretString"])
    assert set(secret) == {"apiKey", "secretKey", "paper"} and secret["paper"] is True
    # The sandbox keys live only in the secret, never in the settings file.
    env_file = (stack.Path(stack_env["SIGNAL9_HOME"]) / "local.env").read_text()
    assert secret["apiKey"] not in env_file and secret["secretKey"] not in env_file


def test_provision_is_idempotent(stack_env):
    lines = provision(Settings.from_env())
    assert lines[:4] == [f"table {stack_env['SIGNAL9_ASSETS_TABLE']}: exists",
                         f"table {stack_env['SIGNAL9_MARKET_DATA_TABLE']}: exists",
                         f"event bus {stack_env['SIGNAL9_EVENT_BUS']}: exists",
                         f"secret {stack_env['ALPACA_SECRET_ID']}: exists"]
    names = boto3.client("dynamodb").list_tables()["TableNames"]
    assert (names.count(stack_env["SIGNAL9_ASSETS_TABLE"]) == 1
            and names.count(stack_env["SIGNAL9_MARKET_DATA_TABLE"]) == 1)


def test_a_missing_secret_without_credentials_is_a_clear_error(stack_env):
    with pytest.raises(ProvisionError, match="ALPACA_API_KEY_ID"):
        ensure_secret("signal9/does-not-exist", None)
    assert ensure_secret("signal9/created-here", AlpacaCredentials("k", "s")) == "secret signal9/created-here: created"
    assert "k" not in repr(AlpacaCredentials("k", "s")).replace("api_key", "").replace("secret_key", "")


def test_up_again_reuses_the_running_stack(local_stack):
    home = stack.Path(local_stack["SIGNAL9_HOME"])
    assert stack.up(home) == local_stack
    assert all(stack.status(home).values())


def test_down_stops_only_its_own_processes_and_dynamodb_data_persists(tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    env = stack.up(tmp_path)
    pids = [info["pid"] for info in json.loads((tmp_path / "stack.json").read_text()).values()]
    try:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        boto3.client("dynamodb").put_item(TableName=env["SIGNAL9_ASSETS_TABLE"], Item={"asset_id": {"S": "ASSET#KEEP"}})
    finally:
        assert sorted(stack.down(tmp_path)) == ["dynalite", "moto", "sandbox"]
    assert not any(os.path.exists(f"/proc/{pid}/cmdline") and open(f"/proc/{pid}/cmdline").read() for pid in pids)
    assert stack.status(tmp_path) == {} and stack.down(tmp_path) == []
    env = stack.up(tmp_path)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", env["AWS_ENDPOINT_URL_DYNAMODB"])
        item = boto3.client("dynamodb").get_item(TableName=env["SIGNAL9_ASSETS_TABLE"],
                                                 Key={"asset_id": {"S": "ASSET#KEEP"}})
        assert item["Item"]["asset_id"]["S"] == "ASSET#KEEP"
    finally:
        stack.down(tmp_path)


def test_a_service_that_fails_to_start_is_named_and_nothing_is_left_running(tmp_path):
    bad = tmp_path / "universe.json"
    bad.write_text("{not json")
    with pytest.raises(stack.StackError, match=r"sandbox exited .*universe\.json"):
        stack.up(tmp_path / "home", universe=str(bad))
    assert stack.status(tmp_path / "home") == {}
    leftovers = [p for p in os.listdir("/proc") if p.isdigit() and str(tmp_path) in _cmdline(p)]
    assert leftovers == []


def test_missing_dynalite_says_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGNAL9_DYNALITE_BIN", str(tmp_path / "no-such-dynalite"))
    with pytest.raises(stack.StackError, match="make install"):
        stack.up(tmp_path / "home")
    assert stack.status(tmp_path / "home") == {}


def _cmdline(pid: str) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
    except OSError:
        return ""


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, default_universe):
    """`python -m signal9_devstack.local run` once, with no stack running: its home and what it printed."""
    import subprocess
    import sys

    tmp_path = tmp_path_factory.mktemp("local-run")
    universe = tmp_path / "universe.json"
    universe.write_text(json.dumps(default_universe[:400]))
    home = tmp_path / "home"
    done = subprocess.run([sys.executable, "-m", "signal9_devstack.local", "run", "--universe", str(universe)],
                          env={**os.environ, "SIGNAL9_HOME": str(home)}, capture_output=True, text=True, timeout=600)
    return home, done


def test_local_run_syncs_and_stops_the_stack_it_started(local_run, default_universe):
    home, done = local_run
    assert done.returncode == 0, done.stderr[-3000:]
    listed = sum(a["status"] == "active" and a["tradable"] for a in default_universe[:400])
    assert "asset_sync_job run" in done.stdout and "SUCCESS" in done.stdout
    assert f"assets_table: listed={listed}, new={listed}," in done.stdout
    assert stack.status(home) == {}  # it stopped what it started
    assert (home / "dynalite").is_dir()  # and the data stays for the next run


def test_local_run_sends_its_metrics_before_it_stops_the_stack(local_run):
    _, done = local_run
    assert done.returncode == 0, done.stderr[-3000:]
    said = [line for line in (done.stdout + done.stderr).splitlines() if "refused" in line or "dropped" in line]
    assert said == []
