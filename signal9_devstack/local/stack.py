"""Start and stop the local stack: the Alpaca sandbox, dynalite (DynamoDB) and moto (other AWS services).

Each service runs as its own process on a free loopback port, in its own
process group, logging to `$SIGNAL9_HOME/logs/`. `up` records their pids in
`$SIGNAL9_HOME/stack.json` and writes every endpoint and setting to
`$SIGNAL9_HOME/local.env`; `down` stops exactly those pids. Nothing is left
running when a start fails: what was already started is stopped again.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from signal9_devstack.local.provision import provision
from signal9_pipeline import settings
from signal9_pipeline.credentials import AlpacaCredentials
from signal9_pipeline.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
READY_LINE = re.compile(r"(?:listening on|Dynalite listening at:) (https?://[\w.\-]+:\d+)")


class StackError(RuntimeError):
    """A local service could not start or stop; the message names it and says how to fix it."""


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    marker: str  # a string of the command line, to recognise our own process by its pid
    env: dict[str, str]
    hint: str  # what to do when it does not start


def home_dir() -> Path:
    return Path(settings.get("SIGNAL9_HOME") or PROJECT_ROOT / ".signal9").resolve()


def dynalite_bin() -> str:
    configured = settings.get("SIGNAL9_DYNALITE_BIN")
    candidates = ([configured] if configured
                  else [str(PROJECT_ROOT / "node_modules" / ".bin" / "dynalite"), shutil.which("dynalite")])
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            if not configured and (PROJECT_ROOT / "node_modules" / "dynalite" / "cli.js").exists():
                return str(Path(__file__).with_name("dynalite.js"))  # the project's dynalite, guarded against resets
            return candidate
    raise StackError(
        f"dynalite not found (looked at {', '.join(filter(None, candidates))}): run `make install`, which runs `npm ci`"
    )


def up(home: Path | None = None, *, rate_limit_per_minute: int = 200, seed: int = 0,
       universe: str | None = None) -> dict[str, str]:
    """Start the stack (unless it already runs), provision it, write local.env; returns its settings."""
    home = (home or home_dir()).resolve()
    running = status(home)
    if running and all(running.values()):
        return read_env(home)
    if running:
        down(home)
    for sub in ("logs", "dynalite", "dagster"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    if shutil.which("node") is None:
        raise StackError("node not found: install Node.js 20 or newer (dynalite, the local DynamoDB, runs on it)")
    api_key, secret_key = f"SBX{secrets.token_hex(8).upper()}", secrets.token_urlsafe(24)
    sandbox_args = [sys.executable, "-m", "signal9_devstack.sandbox", "--host", "127.0.0.1", "--port", "0",
                    "--seed", str(seed), "--rate-limit-per-minute", str(rate_limit_per_minute)]
    if universe:
        sandbox_args += ["--universe", str(Path(universe).resolve())]
    services = [
        Service("moto", [sys.executable, "-m", "signal9_devstack.local.moto_server", "--host", "127.0.0.1",
                         "--port", "0"],
                "signal9_devstack.local.moto_server", {}, "check that moto[server] is installed (`make install`)"),
        # dynalite treats --port 0 as "default port", so it gets a port picked here.
        Service("dynalite", [dynalite_bin(), "--host", "127.0.0.1", "--port", str(free_port()),
                             "--path", str(home / "dynalite"),
                             "--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0"],
                str(home / "dynalite"), {}, "run `make install` (npm ci); if the data folder is corrupt, remove it"),
        Service("sandbox", sandbox_args, "signal9_devstack.sandbox", {
            "SIGNAL9_SANDBOX_API_KEY": api_key, "SIGNAL9_SANDBOX_SECRET_KEY": secret_key,
        }, "see the sandbox log; a bad --universe file is named there"),
    ]
    started: dict[str, dict] = {}
    try:
        for service in services:
            started[service.name] = _start(service, home)
            _write_state(home, started)
        env = _settings_env(home, started, rate_limit_per_minute)
        _write_env(home, env)
        with _environ(env):
            provision(Settings.from_env(), AlpacaCredentials(api_key, secret_key))
    except BaseException:
        _stop_all(started)
        (home / "stack.json").unlink(missing_ok=True)
        raise
    return env


def _start(service: Service, home: Path) -> dict:
    log_path = home / "logs" / f"{service.name}.log"
    with open(log_path, "w") as log:
        try:
            proc = subprocess.Popen(service.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, **service.env}, start_new_session=True)
        except OSError as exc:
            raise StackError(f"{service.name} could not start ({exc.strerror}): {service.hint}") from None
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        match = READY_LINE.search(log_path.read_text(errors="replace"))
        if match:
            url = match.group(1).replace("localhost", "127.0.0.1")
            return {"pid": proc.pid, "url": url, "marker": service.marker, "log": str(log_path)}
        if proc.poll() is not None:
            raise StackError(f"{service.name} exited with code {proc.returncode} before it was ready: "
                             f"{_tail(log_path)} -- {service.hint} (log: {log_path})")
        time.sleep(0.1)
    _terminate(proc.pid, service.marker)
    raise StackError(f"{service.name} was not ready within {READY_TIMEOUT_S:.0f} s: {_tail(log_path)} "
                     f"(log: {log_path})")


def free_port() -> int:
    """A loopback port free right now (for servers such as dynalite that cannot be given port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 5) -> str:
    text = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:]) or "(no output)"


def _settings_env(home: Path, started: dict[str, dict], rate_limit_per_minute: int) -> dict[str, str]:
    return {
        "AWS_DEFAULT_REGION": "us-east-1",
        # moto and dynalite accept any credentials; these are placeholders, not secrets.
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_ENDPOINT_URL": started["moto"]["url"],
        "AWS_ENDPOINT_URL_DYNAMODB": started["dynalite"]["url"],
        "ALPACA_TRADING_URL": started["sandbox"]["url"],
        "ALPACA_DATA_URL": started["sandbox"]["url"],
        "ALPACA_SECRET_ID": "signal9/alpaca-credentials",
        "ALPACA_RATE_LIMIT_PER_MINUTE": str(rate_limit_per_minute),
        "SIGNAL9_SANDBOX_URL": started["sandbox"]["url"],
        "SIGNAL9_ASSETS_TABLE": "signal9-assets",
        "SIGNAL9_MARKET_DATA_TABLE": "signal9-market-data",
        "SIGNAL9_EVENT_BUS": "signal9-events",
        "SIGNAL9_ALERTS_TOPIC": "signal9-alerts",
        # Local runs load a month of history per new symbol, not five years: minutes on a laptop.
        "SIGNAL9_POLLENATION_HISTORY_DAYS": "30",
        "SIGNAL9_DAGSTER_URL": "http://127.0.0.1:3000",
        "SIGNAL9_RATE_LIMITER_URL": f"sqlite:///{home / 'alpaca-rate-limit.sqlite'}",
        "SIGNAL9_HOME": str(home),
        "DAGSTER_HOME": str(_dagster_home(home)),
    }


def _dagster_home(home: Path) -> Path:
    """A Dagster instance folder for local runs, configured by the project's dagster.yaml."""
    target = home / "dagster"
    target.mkdir(parents=True, exist_ok=True)
    source = PROJECT_ROOT / "dagster.yaml"
    if source.exists():
        shutil.copyfile(source, target / "dagster.yaml")
    return target


def _write_env(home: Path, env: dict[str, str]) -> None:
    lines = [f"{key}={value}" for key, value in env.items()]
    (home / "local.env").write_text("# written by `python -m signal9_devstack.local up`\n" + "\n".join(lines) + "\n")


def read_env(home: Path | None = None) -> dict[str, str]:
    path = (home or home_dir()) / "local.env"
    if not path.exists():
        raise StackError(f"{path} not found: start the stack with `python -m signal9_devstack.local up`")
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def _write_state(home: Path, started: dict[str, dict]) -> None:
    (home / "stack.json").write_text(json.dumps(started, indent=2))


def status(home: Path | None = None) -> dict[str, bool]:
    """Which recorded services are alive (by pid and command line)."""
    path = (home or home_dir()) / "stack.json"
    if not path.exists():
        return {}
    return {name: _alive(info["pid"], info["marker"]) for name, info in json.loads(path.read_text()).items()}


def down(home: Path | None = None) -> list[str]:
    """Stop the services `up` started (only those pids); returns the names stopped."""
    home = (home or home_dir()).resolve()
    path = home / "stack.json"
    if not path.exists():
        return []
    started = json.loads(path.read_text())
    stopped = _stop_all(started)
    path.unlink(missing_ok=True)
    return stopped


def _stop_all(started: dict[str, dict]) -> list[str]:
    return [name for name, info in reversed(list(started.items())) if _terminate(info["pid"], info["marker"])]


def _alive(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return marker in cmdline


def _terminate(pid: int, marker: str, timeout_s: float = 10.0) -> bool:
    """SIGTERM the process group we started, then SIGKILL; only if the pid is still our process."""
    if not _alive(pid, marker):
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                waited, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                waited = pid if not _alive(pid, marker) else 0
            if waited == pid or not _alive(pid, marker):
                return True
            time.sleep(0.05)
    return True


class _environ:
    """Temporarily apply settings to os.environ (boto3 reads endpoints from it)."""

    def __init__(self, env: dict[str, str]):
        self.env, self.saved = env, {}

    def __enter__(self) -> None:
        self.saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)

    def __exit__(self, *exc: object) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
