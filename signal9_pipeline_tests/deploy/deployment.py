"""Dagster as production runs it, on one machine: code server, daemon and webserver as separate processes.

Each process starts the way the image starts it (deploy/Dockerfile's ENTRYPOINT, so the
preflight checks run first), reads deploy/dagster.yaml with only the run launcher swapped
for the default one (there is no ECS here), and loads code through deploy/workspace.yaml.
Tests talk to it only through the webserver's GraphQL API, as the UI does.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from signal9_devstack.local.stack import free_port
from signal9_pipeline_tests.conftest import PROJECT_ROOT, VENV_BIN

DEPLOY = PROJECT_ROOT / "deploy"
LOCATION, REPOSITORY = "signal9_pipeline", "__repository__"


class DeploymentError(RuntimeError):
    """A Dagster service died or a condition was not reached; the message quotes the services' logs."""


def image_command(name: str) -> list[str]:
    """The Dockerfile's last JSON-form instruction `name` (ENTRYPOINT or CMD) as a list."""
    found = re.findall(rf"^{name}\s+(\[.*\])\s*$", (DEPLOY / "Dockerfile").read_text(), flags=re.MULTILINE)
    if not found:
        raise DeploymentError(f"deploy/Dockerfile has no JSON-form {name}")
    return json.loads(found[-1])


def _local(argv: list[str]) -> list[str]:
    """The image's command with this machine's interpreter and virtualenv scripts."""
    def resolve(arg: str) -> str:
        if arg == "python":
            return sys.executable
        return str(VENV_BIN / arg) if (VENV_BIN / arg).exists() else arg
    return [resolve(argv[0]), *argv[1:]]


def write_instance(home: Path) -> Path:
    """deploy/dagster.yaml in `home`, with the default run launcher in place of ECS."""
    config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert config.pop("run_launcher")["class"] == "EcsRunLauncher"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return home


@dataclass
class Deployment:
    env: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    webserver_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.webserver_port}"

    def start(self) -> Deployment:
        entrypoint, workspace = image_command("ENTRYPOINT"), str(DEPLOY / "workspace.yaml")
        code = [a.replace("0.0.0.0", "127.0.0.1") for a in image_command("CMD")]
        code[code.index("--port") + 1] = self.env["SIGNAL9_CODE_SERVER_PORT"]
        self.webserver_port = free_port()
        commands = {
            "code-server": code,
            "daemon": ["dagster-daemon", "run", "-w", workspace],
            "webserver": ["dagster-webserver", "-h", "127.0.0.1", "-p", str(self.webserver_port), "-w", workspace],
        }
        self.logs.mkdir(parents=True, exist_ok=True)
        for name, command in commands.items():
            with (self.logs / f"{name}.log").open("w") as out:
                # A session of its own: stopping the group stops the runs a service started too.
                self.processes[name] = subprocess.Popen(_local(entrypoint) + _local(command), env=self.env, stdout=out,
                                                        stderr=subprocess.STDOUT, cwd=PROJECT_ROOT,
                                                        start_new_session=True)
            if name == "code-server":
                self.wait_for(self._code_server_ready, 120, "the code server to listen")
        self.wait_for(self._location_loaded, 180, "the webserver to load the code location")
        return self

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def log_tails(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')[-chars:]}"
                         for p in sorted(self.logs.glob("*.log")))

    def wait_for(self, condition: Callable[[], Any], timeout_s: float, what: str, every_s: float = 1.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = {n: p.returncode for n, p in self.processes.items() if p.poll() is not None}
            if dead:
                raise DeploymentError(f"{dead} exited while waiting for {what}\n{self.log_tails()}")
            result = condition()
            if result:
                return result
            time.sleep(every_s)
        raise DeploymentError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{self.log_tails()}")

    def _code_server_ready(self) -> bool:
        import socket

        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", int(self.env["SIGNAL9_CODE_SERVER_PORT"]))) == 0

    def _location_loaded(self) -> bool:
        try:
            data = self.graphql("""{ workspaceOrError { ... on Workspace { locationEntries {
                name locationOrLoadError { __typename ... on PythonError { message } } } } } }""")
        except requests.RequestException:
            return False
        entries = data["workspaceOrError"].get("locationEntries") or []
        for entry in entries:
            loaded = entry["locationOrLoadError"] or {}
            if loaded.get("__typename") == "PythonError":
                raise DeploymentError(f"code location {entry['name']} failed to load: {loaded['message']}")
            if loaded.get("__typename") == "RepositoryLocation":
                return True
        return False

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise DeploymentError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    # --- what the UI does ------------------------------------------------------------------
    def launch_job(self, job: str, run_config: dict | None = None) -> str:
        data = self.graphql("""mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
            __typename ... on LaunchRunSuccess { run { runId } } ... on Error { message } } }""",
                            {"params": {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
                                                     "jobName": job},
                                        "runConfigData": run_config or {}}})["launchRun"]
        if data["__typename"] != "LaunchRunSuccess":
            raise DeploymentError(f"launching {job} failed: {data}")
        return data["run"]["runId"]

    def launch_backfill(self, asset: str, partition_keys: list[str]) -> str:
        data = self.graphql("""mutation($params: LaunchBackfillParams!) {"""
                            """ launchPartitionBackfill(backfillParams: $params) {
            __typename ... on LaunchBackfillSuccess { backfillId } ... on Error { message } } }""",
                            {"params": {"assetSelection": [{"path": [asset]}], "partitionNames": partition_keys}})
        result = data["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise DeploymentError(f"launching the backfill of {asset} failed: {result}")
        return result["backfillId"]

    def runs(self, tags: dict[str, str] | None = None, job: str | None = None) -> list[dict]:
        run_filter: dict[str, Any] = {}
        if tags:
            run_filter["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        if job:
            run_filter["pipelineName"] = job
        data = self.graphql("""query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results {
            runId jobName status startTime endTime tags { key value } } } } }""", {"filter": run_filter})
        return data["runsOrError"]["results"]

    def run(self, run_id: str) -> dict:
        return self.graphql("""query($id: ID!) { runOrError(runId: $id) { __typename ... on Run {
            runId status startTime endTime } } }""", {"id": run_id})["runOrError"]

    def wait_for_runs(self, run_ids: list[str], timeout_s: float) -> list[dict]:
        def finished() -> list[dict] | None:
            runs = [self.run(run_id) for run_id in run_ids]
            return runs if all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs) else None
        return self.wait_for(finished, timeout_s, f"runs {run_ids} to finish", every_s=2)

    def run_failure_text(self, run_id: str) -> str:
        data = self.graphql("""query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
            __typename ... on MessageEvent { message }"""
                            """ ... on ExecutionStepFailureEvent { error { message } } } } } }""", {"id": run_id})
        events = data["logsForRun"].get("events") or []
        return "\n".join(str(e.get("error") or e.get("message"))
                         for e in events if "FAILURE" in e["__typename"].upper())[-4000:]
