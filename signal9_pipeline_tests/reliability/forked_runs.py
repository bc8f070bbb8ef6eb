"""Pipeline runs in forked processes, so tests can SIGKILL real runs and rerun them in fresh ones, cheaply.

Importing Dagster and the definitions takes seconds, and forty kill-and-rerun
cycles cannot pay that twice each. `python -m signal9_pipeline_tests.reliability.forked_runs`
imports them once and forks one child per run: the child is a real process that a
failpoint's SIGKILL ends, and each rerun is a new child that shares nothing with the
one that died (the server itself never runs pipeline code, opens no connection and
starts no thread). The server reads one JSON request per line on stdin and answers
one JSON line: how the child ended, what its steps returned, and its peak RSS.

A request's steps run in order in one child with one Dagster instance:
`sync` (asset_sync_job), `pollenate` (new_symbols_sensor ticks and the runs they ask
for, until it asks for none) and `bars` (one ohlc_bars run over a date range).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Step = tuple[str, dict[str, Any]]
PROJECT_ROOT = Path(__file__).resolve().parents[2]
MAX_SENSOR_TICKS = 10


@dataclass
class RunOutcome:
    killed: bool  # ended by SIGKILL (a failpoint fired)
    exit_code: int
    steps: list[dict[str, Any]]  # what each finished step returned
    dynamodb_writes: int  # write requests sent (counted while SIGNAL9_FAILPOINT arms dynamodb.write)
    peak_rss_mb: float
    wall_s: float
    error: str = ""

    @property
    def succeeded(self) -> bool:
        return not self.killed and self.exit_code == 0 and all(s["success"] for s in self.steps)


class ForkServer:
    """The server process; `run(steps, env)` forks one child for the steps and waits for it to end."""

    def __init__(self, env: dict[str, str], log: Path, cwd: Path = PROJECT_ROOT):
        self.log = log.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.log, env=env, cwd=cwd, text=True)

    def run(self, steps: list[Step], env: dict[str, str] | None = None, *, batch_size: int | None = None,
            dagster_home: str | None = None, timeout_s: float = 300) -> RunOutcome:
        request = {"steps": steps, "env": env or {}, "batch_size": batch_size, "dagster_home": dagster_home}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            raise TimeoutError(f"no answer from the fork server within {timeout_s} s (log: {self.log.name})")
        return RunOutcome(**json.loads(line))

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- the server and its children -------------------------------------------------------------------


def _sync(instance, **_: Any) -> dict[str, Any]:
    from signal9_pipeline_tests.support import run_sync

    result = run_sync(instance=instance)
    return {"success": result.success}


def _pollenate(instance, **_: Any) -> dict[str, Any]:
    """Sensor ticks, each followed by the runs it asked for, until a tick asks for none."""
    from signal9_pipeline_tests.support import drive_sensor

    try:
        results = drive_sensor(instance, max_ticks=MAX_SENSOR_TICKS, raise_on_error=False)
    except RuntimeError as exc:
        return {"success": False, "runs": 0, "failed_runs": 0, "error": str(exc)}
    failed = sum(not r.success for r in results)
    return {"success": failed == 0, "runs": len(results), "failed_runs": failed}


def _bars(instance, *, first: str, last: str, timeframe: str = "1Day", **_: Any) -> dict[str, Any]:
    from signal9_pipeline_tests.support import materialize_bars

    result = materialize_bars(timeframe, first, last, instance=instance)
    return {"success": result.success}


STEPS: dict[str, Callable[..., dict[str, Any]]] = {"sync": _sync, "pollenate": _pollenate, "bars": _bars}


def _child(request: dict[str, Any], answer_fd: int) -> None:
    """Runs in the forked child; never returns."""
    code = 1
    try:
        os.dup2(2, 1)  # stdout is the server's answer channel: whatever the pipeline prints goes to the log
        os.environ.update(request["env"])
        import dagster as dg

        from signal9_pipeline import failpoints
        from signal9_pipeline.resources import dynamodb

        if request["batch_size"]:
            dynamodb.BATCH_SIZE = request["batch_size"]
        instance = (dg.DagsterInstance.local_temp(request["dagster_home"]) if request["dagster_home"]
                    else dg.DagsterInstance.ephemeral())
        results = [STEPS[name](instance, **kwargs) for name, kwargs in request["steps"]]
        answer = {"steps": results, "dynamodb_writes": failpoints.passes(dynamodb.WRITE_SENT)}
        code = 0
    except BaseException:  # the test reads the traceback from the answer
        answer = {"steps": [], "dynamodb_writes": 0, "error": traceback.format_exc()[-4000:]}
    with os.fdopen(answer_fd, "w") as out:
        out.write(json.dumps(answer))
    os._exit(code)


def _run_in_child(request: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(request, write_fd)
    os.close(write_fd)
    with os.fdopen(read_fd) as answers:
        text = answers.read()  # EOF when the child exits or is killed
    _, status, usage = os.wait4(pid, 0)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    answer = json.loads(text) if text else {"steps": [], "dynamodb_writes": 0}
    return {**answer, "killed": killed, "exit_code": os.waitstatus_to_exitcode(status),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "wall_s": round(time.monotonic() - started, 2)}


def serve() -> None:
    import signal9_pipeline.definitions  # noqa: F401 - the import every child shares
    import signal9_pipeline_tests.support  # noqa: F401

    for line in sys.stdin:
        print(json.dumps(_run_in_child(json.loads(line))), flush=True)


if __name__ == "__main__":
    serve()
