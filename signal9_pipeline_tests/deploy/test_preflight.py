"""A production container with a missing setting or an unreachable service says so by name, before Dagster starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from signal9_devstack.local.stack import free_port
from signal9_pipeline_tests.conftest import PROJECT_ROOT
from signal9_pipeline_tests.deploy.deployment import DEPLOY

pytestmark = pytest.mark.production_like


@pytest.fixture
def production_env(tmp_path, postgres_env, redis_server) -> dict[str, str]:
    """Everything deploy/dagster.yaml (ECS launcher included) needs, with real PostgreSQL and Redis."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    forwarded = {name: "x" for name in instance["run_launcher"]["config"]["env_vars"]}
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "SIGNAL9_", "ALPACA_"))},
            **forwarded, **postgres_env, "DAGSTER_HOME": str(home), "DAGSTER_S3_BUCKET": "b",
            "DAGSTER_PG_PASSWORD_SECRET_ARN": "arn:x", "SIGNAL9_RUN_TASK_ROLE_ARN": "arn:r",
            "SIGNAL9_RUN_EXECUTION_ROLE_ARN": "arn:e", "SIGNAL9_RUN_LOG_GROUP": "/signal9/runs",
            "ALPACA_RATE_LIMIT_PER_MINUTE": "200", "ALPACA_REQUEST_TIMEOUT_S": "30", "ALPACA_MAX_ATTEMPTS": "5",
            "SIGNAL9_BARS_WORKERS": "4", "SIGNAL9_POLLENATION_HISTORY_DAYS": "1825",
            "SIGNAL9_POLLENATION_BATCH_SIZE": "100", "SIGNAL9_POLLENATION_MAX_RUNS": "2", "ALPACA_PAPER": "true",
            "ALPACA_FEED": "iex", "SIGNAL9_BARS_START_DATE": "2024-01-02",
            "SIGNAL9_RATE_LIMITER_URL": f"redis://127.0.0.1:{redis_server.port}/0"}


def preflight(env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "signal9_pipeline.preflight", "--", *command], env=env,
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)


def test_a_complete_configuration_starts_the_command(production_env):
    done = preflight(production_env, sys.executable, "-c", "print('dagster would start here')")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "dagster would start here"


def test_every_missing_variable_is_named_at_once(production_env):
    for name in ("DAGSTER_PG_PASSWORD", "SIGNAL9_RUN_TASK_ROLE_ARN", "SIGNAL9_EVENT_BUS"):
        production_env.pop(name)
    workspace_env = {k: v for k, v in production_env.items() if not k.startswith("SIGNAL9_CODE_SERVER")}
    done = preflight(workspace_env, "dagster-daemon", "run", "-w", str(DEPLOY / "workspace.yaml"))
    assert done.returncode == 2
    for name in ("DAGSTER_PG_PASSWORD", "SIGNAL9_RUN_TASK_ROLE_ARN", "SIGNAL9_EVENT_BUS", "SIGNAL9_CODE_SERVER_HOST",
                 "SIGNAL9_CODE_SERVER_PORT"):
        assert name in done.stderr, name
    assert "run task" in done.stderr  # SIGNAL9_EVENT_BUS: forwarded by the launcher, not read by dagster.yaml


def test_unreachable_postgres_is_named_with_its_address(production_env):
    port = free_port()
    production_env["DAGSTER_PG_PORT"] = str(port)
    done = preflight(production_env, "true")
    assert done.returncode == 2
    assert f"PostgreSQL database at 127.0.0.1:{port}" in done.stderr


def test_wrong_postgres_password_is_named_and_never_echoed(production_env):
    production_env["DAGSTER_PG_PASSWORD"] = "not-the-password-51c2"
    done = preflight(production_env, "true")
    assert done.returncode == 2
    assert "PostgreSQL database at 127.0.0.1" in done.stderr and "password authentication failed" in done.stderr
    assert "not-the-password-51c2" not in done.stderr + done.stdout


def test_unreachable_redis_is_named_with_its_address(production_env):
    port = free_port()
    production_env["SIGNAL9_RATE_LIMITER_URL"] = f"redis://127.0.0.1:{port}/0"
    done = preflight(production_env, "true")
    assert done.returncode == 2
    assert f"shared rate limiter at 127.0.0.1:{port} is unreachable" in done.stderr


def test_a_per_task_limiter_is_refused_where_runs_are_ecs_tasks(production_env, tmp_path):
    production_env["SIGNAL9_RATE_LIMITER_URL"] = f"sqlite:///{tmp_path / 'limit.sqlite'}"
    done = preflight(production_env, "true")
    assert done.returncode == 2
    assert "SIGNAL9_RATE_LIMITER_URL must be redis://" in done.stderr
