"""Checks a production container's configuration before Dagster starts, and names what is wrong.

Left to itself, Dagster names an unset `{env: X}` of dagster.yaml at the bottom of a long
traceback, one config section at a time; a variable the ECS launcher forwards to run tasks
is missed only when a run is launched; and an unreachable PostgreSQL or Redis shows up as
retries and timeouts in whichever run touches it first. The image's entrypoint runs this
first (`python -m signal9_pipeline.preflight -- dagster-daemon run ...`): it lists every
missing variable and every setting that does not parse (`settings.REGISTRY`) at once, says which
service at which address does not answer, refuses a per-task rate limiter where runs are ECS tasks,
and only then replaces itself with the command.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from signal9_pipeline import settings
from signal9_pipeline.resources.rate_limit import RateLimiterError, shared_limiter

EXIT_MISCONFIGURED = 2


def referenced_env_vars(config: Any) -> Iterator[str]:
    """Every variable named by an `{env: NAME}` value anywhere in a Dagster YAML document."""
    if isinstance(config, dict):
        if set(config) == {"env"} and isinstance(config["env"], str):
            yield config["env"]
            return
        for value in config.values():
            yield from referenced_env_vars(value)
    elif isinstance(config, list):
        for value in config:
            yield from referenced_env_vars(value)


def _load(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"signal9 preflight: cannot read {path}: {exc}") from exc


def _workspace_files(command: list[str]) -> list[Path]:
    return [Path(command[i + 1]) for i, arg in enumerate(command[:-1]) if arg in ("-w", "--workspace")]


def forwarded_env_vars(instance: dict) -> list[str]:
    """The variables the ECS run launcher copies from this process into every run task."""
    config = (instance.get("run_launcher") or {}).get("config") or {}
    return [name for name in config.get("env_vars") or [] if isinstance(name, str) and "=" not in name]


def missing_variables(documents: dict[Path, dict], environ: dict[str, str], instance_path: Path | None) -> list[str]:
    problems = []
    for path, config in documents.items():
        for name in dict.fromkeys(referenced_env_vars(config)):
            if not environ.get(name):
                problems.append(f"{name} is not set ({path} reads it)")
        if path == instance_path:
            problems += [f"{name} is not set (the run launcher in {path} passes it to every run task)"
                         for name in forwarded_env_vars(config) if name not in environ]
    return problems


def postgres_problem(instance: dict, environ: dict[str, str]) -> str | None:
    """None when the instance has no PostgreSQL storage or the database answers."""
    db = ((instance.get("storage") or {}).get("postgres") or {}).get("postgres_db")
    if not db:
        return None
    import psycopg2

    def value(field: str, default: str = "") -> str:
        raw = db.get(field, default)
        return environ.get(raw["env"], "") if isinstance(raw, dict) else str(raw)

    host, port = value("hostname"), value("port", "5432")
    try:
        psycopg2.connect(host=host, port=int(port), user=value("username"), password=value("password"),
                         dbname=value("db_name"), connect_timeout=5).close()
    except psycopg2.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (f"the Dagster PostgreSQL database at {host}:{port} (DAGSTER_PG_HOST/DAGSTER_PG_PORT) "
                f"does not answer: {first_line}")
    return None


def limiter_problem(instance: dict, environ: dict[str, str]) -> str | None:
    """None when the configured shared limiter is usable by every process that calls Alpaca."""
    url = environ.get("SIGNAL9_RATE_LIMITER_URL", "")
    launcher = (instance.get("run_launcher") or {}).get("class", "")
    if launcher == "EcsRunLauncher" and urlsplit(url).scheme not in ("redis", "rediss"):
        return ("SIGNAL9_RATE_LIMITER_URL must be redis://HOST:PORT/DB when runs are ECS tasks: "
                "a SQLite limiter is private to one task, so concurrent runs would exceed Alpaca's limit together")
    if not url:
        return None
    try:
        shared_limiter(url, settings.get("ALPACA_RATE_LIMIT_PER_MINUTE", environ))
    except (RateLimiterError, ValueError) as exc:
        return str(exc)
    return None


def problems(command: list[str], environ: dict[str, str]) -> list[str]:
    home = environ.get("DAGSTER_HOME")
    instance_path = Path(home) / "dagster.yaml" if home else None
    documents = {p: _load(p) for p in [instance_path, *_workspace_files(command)] if p is not None and p.exists()}
    found = missing_variables(documents, environ, instance_path) + settings.problems(environ)
    if found:  # the services cannot even be located, or a run would fail on a setting, until these are fixed
        return found
    instance = documents.get(instance_path, {}) if instance_path else {}
    return [p for p in (postgres_problem(instance, environ), limiter_problem(instance, environ)) if p]


def main(argv: list[str]) -> int:
    command = argv[argv.index("--") + 1:] if "--" in argv else argv
    if not command:
        print("usage: python -m signal9_pipeline.preflight -- COMMAND [ARGS...]", file=sys.stderr)
        return EXIT_MISCONFIGURED
    found = problems(command, dict(os.environ))
    if found:
        print("signal9 preflight: this container cannot start:", file=sys.stderr)
        for problem in found:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_MISCONFIGURED
    sys.stdout.flush()
    os.execvp(command[0], command)
    return 0  # not reached: execvp replaces the process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
