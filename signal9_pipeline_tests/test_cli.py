"""The command-line paths users take: `dg check defs` and a real `dg launch` against the local stack."""

import os
import subprocess

import dagster as dg
import pytest

from signal9_pipeline_tests.conftest import PROJECT_ROOT, VENV_BIN


def run(argv: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli_env(stack_env, tmp_path) -> dict[str, str]:
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    return {**os.environ, "DAGSTER_HOME": str(dagster_home), "VIRTUAL_ENV": str(VENV_BIN.parent)}


def test_dg_check_defs(cli_env):
    done = run([str(VENV_BIN / "dg"), "check", "defs"], cli_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All definitions loaded successfully" in done.stdout + done.stderr


def test_dg_launch_materializes_alpaca_assets_against_the_local_stack(cli_env):
    done = run([str(VENV_BIN / "dg"), "launch", "--assets", "alpaca_assets"], cli_env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    with dg.DagsterInstance.from_config(cli_env["DAGSTER_HOME"]) as instance:
        runs = instance.get_runs()
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS]
        event = instance.get_latest_materialization_event(dg.AssetKey("alpaca_assets"))
        assert event.run_id == runs[0].run_id
        assert event.asset_materialization.metadata["dagster/row_count"].value == 32212


def test_dg_launch_backfills_a_partition_range_as_one_run(cli_env):
    env = {**cli_env, "SIGNAL9_INTRADAY_WATCHLIST": "SPY,BTC/USD"}
    done = run([str(VENV_BIN / "dg"), "launch", "--assets", "ohlc_bars",
                "--partition-range", "2024-06-03|1Hour...2024-06-05|1Hour"], env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    with dg.DagsterInstance.from_config(cli_env["DAGSTER_HOME"]) as instance:
        runs = instance.get_runs()
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS]
        partitions = instance.get_materialized_partitions(dg.AssetKey("ohlc_bars"))
        assert partitions == {"2024-06-03|1Hour", "2024-06-04|1Hour", "2024-06-05|1Hour"}
