"""The preflight's reading of the instance and workspace files, without any server."""

from __future__ import annotations

from pathlib import Path

import yaml

from signal9_pipeline.preflight import forwarded_env_vars, main, missing_variables, referenced_env_vars
from signal9_pipeline_tests.deploy.deployment import DEPLOY


def test_every_env_reference_of_the_deployed_files_is_found():
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    names = set(referenced_env_vars(instance))
    assert {"DAGSTER_PG_HOST", "DAGSTER_PG_PASSWORD", "DAGSTER_S3_BUCKET", "SIGNAL9_RUN_TASK_ROLE_ARN",
            "DAGSTER_PG_PASSWORD_SECRET_ARN"} <= names
    assert set(referenced_env_vars(yaml.safe_load((DEPLOY / "workspace.yaml").read_text()))) == {
        "SIGNAL9_CODE_SERVER_HOST", "SIGNAL9_CODE_SERVER_PORT"}
    assert "SIGNAL9_ASSETS_TABLE" in forwarded_env_vars(instance)


def test_missing_variables_are_all_named_with_the_file_that_reads_them():
    path = Path("/etc/dagster.yaml")
    config = {"storage": {"postgres": {"postgres_db": {"hostname": {"env": "PG_HOST"},
                                                       "password": {"env": "PG_PASSWORD"}}}},
              "run_launcher": {"class": "EcsRunLauncher", "config": {"env_vars": ["TABLE", "FIXED=1"]}}}
    problems = missing_variables({path: config}, {"PG_HOST": "db"}, path)
    assert problems == ["PG_PASSWORD is not set (/etc/dagster.yaml reads it)",
                        "TABLE is not set (the run launcher in /etc/dagster.yaml passes it to every run task)"]
    assert missing_variables({path: config}, {"PG_HOST": "db", "PG_PASSWORD": "x", "TABLE": ""}, path) == []


def test_no_command_is_a_usage_error(capsys):
    assert main(["--"]) == 2
    assert "usage" in capsys.readouterr().err
