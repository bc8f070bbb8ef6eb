"""deploy/ stays consistent with the project: there is no Docker engine here, so the files are read.

The image must install exactly the tested versions, serve the module the project declares,
run as a non-root user, and every run task must receive every setting the pipeline reads.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib

import yaml

from signal9_pipeline_tests.conftest import PROJECT_ROOT
from signal9_pipeline_tests.deploy.deployment import DEPLOY, image_command

sys.path.insert(0, str(DEPLOY))
from lock_requirements import lock_text, runtime_closure

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
DOCKERFILE = (DEPLOY / "Dockerfile").read_text()

def _lock() -> dict[str, str]:
    lines = (DEPLOY / "requirements.lock").read_text().splitlines()
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


def test_lock_is_what_the_tests_run_on():
    assert (DEPLOY / "requirements.lock").read_text() == lock_text(runtime_closure()), \
        "deploy/requirements.lock is stale: run .venv/bin/python deploy/lock_requirements.py > deploy/requirements.lock"


def test_every_pin_of_pyproject_is_locked_at_the_same_version():
    lock = _lock()
    for requirement in PYPROJECT["project"]["dependencies"]:
        name, version = requirement.split("==")
        assert lock.get(name.lower().replace("_", "-")) == version, requirement
    dev_only = {r.split("==")[0].split("[")[0].lower() for r in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert not dev_only & set(lock), "test tools must not ship in the image"


def test_image_installs_the_lock_and_the_package_on_the_tested_python():
    bases = re.findall(r"^FROM python:(\d+\.\d+\.\d+)-slim", DOCKERFILE, flags=re.MULTILINE)
    assert bases and set(bases) == {".".join(map(str, sys.version_info[:3]))}, bases
    assert "pip install --no-deps -r requirements.lock" in DOCKERFILE
    assert "COPY deploy/requirements.lock" in DOCKERFILE
    assert "pip install --no-deps ." in DOCKERFILE


def test_the_image_copies_the_product_and_no_dev_stack_code():
    """Only the product package, its metadata and deploy/ enter the image; the dev stack (signal9_devstack) never."""
    copies = [line.split()[1:] for line in DOCKERFILE.splitlines() if line.startswith("COPY ")]
    sources = [word for words in copies if not any(w.startswith("--from=") for w in words) for word in words[:-1]]
    shipped = {"pyproject.toml", "README.md", "signal9_pipeline", "deploy"}
    assert sources and {s.split("/")[0] for s in sources} <= shipped, sources
    assert "rm -rf" not in DOCKERFILE, "copy only what ships rather than deleting it after the copy"
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().splitlines()  # the build context: all but what `!` lets in
    let_in = [line[1:].strip("/") for line in ignored if line.startswith("!")]
    assert "*" in ignored and "signal9_devstack" not in let_in, let_in


def test_image_serves_the_declared_code_location_as_a_non_root_user():
    module = PYPROJECT["tool"]["dg"]["project"]["code_location_target_module"]
    cmd, entrypoint = image_command("CMD"), image_command("ENTRYPOINT")
    assert cmd[:3] == ["dagster", "api", "grpc"] and cmd[cmd.index("--module-name") + 1] == module
    local_workspace = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())
    assert local_workspace["load_from"][0]["python_module"]["module_name"] == module
    assert entrypoint[:3] == ["python", "-m", "signal9_pipeline.preflight"]
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(rf"^EXPOSE {cmd[cmd.index('--port') + 1]}$", DOCKERFILE, flags=re.MULTILINE)
    for copied in ("deploy/dagster.yaml /opt/dagster/home/dagster.yaml", "deploy/workspace.yaml"):
        assert f"COPY {copied}" in DOCKERFILE
    assert "ENV PATH=/opt/venv/bin:$PATH" in DOCKERFILE and "DAGSTER_HOME=/opt/dagster/home" in DOCKERFILE


def test_instance_uses_postgres_ecs_s3_and_a_pool_for_alpaca_steps():
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert instance["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert instance["run_launcher"]["class"] == "EcsRunLauncher"
    assert instance["compute_logs"]["class"] == "S3ComputeLogManager"
    assert instance["concurrency"]["pools"]["default_limit"] >= 1
    source = (PROJECT_ROOT / "signal9_pipeline" / "market_data" / "assets.py").read_text()
    assert 'pool="alpaca_api"' in source
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    assert set(workspace["load_from"][0]) == {"grpc_server"}


def test_iam_policy_is_valid_json_scoped_to_named_resources():
    policy = json.loads((DEPLOY / "iam" / "run-task-policy.json").read_text())
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert not any(a.endswith("*") for a in statement["Action"]), statement["Sid"]
        if statement["Resource"] == ["*"]:  # PutMetricData has no resource ARN; the namespace condition scopes it
            assert (statement["Action"] == ["cloudwatch:PutMetricData"]
                    and "cloudwatch:namespace" in json.dumps(statement["Condition"]))
