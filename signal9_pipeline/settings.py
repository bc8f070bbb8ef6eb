"""Every setting of the pipeline, declared once: its variable, type, default, meaning and who reads it.

Configuration comes only from the environment, so the same code runs against the local
stack, CI and AWS. `REGISTRY` is the one list of settings: code reads a setting with
`get(NAME)` (typed, defaulted, and refused when NAME is not registered); README's two
configuration tables are `markdown(...)` of it, the variables the ECS run launcher forwards
(`deploy/dagster.yaml`) are its `run` settings, and the image's preflight check validates
every set one against it (tests hold README and the deploy files to it).

Scopes: `run` - read by runs, sensors and schedules, so forwarded to every run task;
`local` - local stack, tests and provisioning only, never set on ECS; `external` - read by
boto3 or Dagster themselves; `deploy` - read by `deploy/dagster.yaml` / `deploy/workspace.yaml`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from datetime import date
from typing import Any


@dataclass(frozen=True)
class Setting:
    name: str
    kind: type  # str, int, bool, date, or dict (a JSON object)
    default: Any  # the value when unset; None: unset, with the meaning `shown` says
    shown: str  # the default as README shows it
    meaning: str
    scope: str = "run"
    forward: bool | None = None  # passed to every ECS run task; by default, exactly the `run` settings

    @property
    def forwarded(self) -> bool:
        return self.scope == "run" if self.forward is None else self.forward


_RATE_LIMIT_FILE = os.path.join(tempfile.gettempdir(), "signal9-alpaca-rate-limit.sqlite")

REGISTRY: tuple[Setting, ...] = (
    Setting("ALPACA_TRADING_URL", str, None, "unset: Alpaca's paper/live host",
            "trading API base URL (the sandbox locally)", "local"),
    Setting("ALPACA_DATA_URL", str, None, "unset: `https://data.alpaca.markets`", "market-data API base URL", "local"),
    Setting("ALPACA_SECRET_ID", str, "signal9/alpaca-credentials", "`signal9/alpaca-credentials`",
            'Secrets Manager secret holding `{"apiKey", "secretKey", "paper"}`'),
    Setting("ALPACA_PAPER", bool, True, "`true`", "use the paper-trading host when `ALPACA_TRADING_URL` is unset"),
    Setting("ALPACA_FEED", str, "iex", "`iex`", "stock feed sent on every bars request and recorded on each item: "
            "`iex` (every plan), `sip` (Algo Trader Plus), `delayed_sip` or `otc`"),
    Setting("ALPACA_RATE_LIMIT_PER_MINUTE", int, 200, "`200`", "Alpaca requests per minute for the whole account"),
    Setting("ALPACA_REQUEST_TIMEOUT_S", int, 30, "`30`", "connect and read timeout of every Alpaca request"),
    Setting("ALPACA_MAX_ATTEMPTS", int, 5, "`5`", "attempts per Alpaca request (retries of 429, 5xx, timeouts)"),
    Setting("SIGNAL9_RATE_LIMITER_URL", str, f"sqlite:///{_RATE_LIMIT_FILE}",
            "`sqlite:///$TMPDIR/signal9-alpaca-rate-limit.sqlite`",
            "where the shared limit lives: `sqlite:///PATH` on one host, `redis://HOST:PORT/DB` across hosts"),
    Setting("AWS_ENDPOINT_URL", str, None, "unset: AWS", "endpoint for every AWS service (moto locally)", "local"),
    Setting("AWS_ENDPOINT_URL_DYNAMODB", str, None, "unset: AWS", "DynamoDB endpoint (dynalite locally)", "local"),
    Setting("AWS_DEFAULT_REGION", str, None, "-", "AWS region (`us-east-1` locally)", "external", forward=True),
    Setting("SIGNAL9_ASSETS_TABLE", str, "signal9-assets", "`signal9-assets`",
            "assets table, key `asset_id` = `ID#{alpaca_id}` (a company) or `ASSET#{symbol}` (its current holder)"),
    Setting("SIGNAL9_MARKET_DATA_TABLE", str, "signal9-market-data", "`signal9-market-data`",
            "bars table, keys `series` = `{alpaca_id}#{timeframe}`, `day`"),
    Setting("SIGNAL9_EVENT_BUS", str, "signal9-events", "`signal9-events`",
            "EventBridge bus for `signal9.advisor` events"),
    Setting("SIGNAL9_METRICS_NAMESPACE", str, "Signal9/Pipeline", "`Signal9/Pipeline`", "CloudWatch namespace"),
    Setting("SIGNAL9_ALERTS_TOPIC", str, "signal9-alerts", "`signal9-alerts`",
            "SNS topic (name or ARN) the alarms and the run-failure alert notify"),
    Setting("SIGNAL9_ALARM_OVERRIDES", dict, {}, "none",
            'JSON: alarm suffix -> `{"threshold", "period_s", "evaluation_periods"}`', "local"),
    Setting("SIGNAL9_DAGSTER_URL", str, "http://127.0.0.1:3000", "`http://127.0.0.1:3000`",
            "base URL of the Dagster UI, for links in alerts"),
    Setting("SIGNAL9_POLLENATION_BATCH_SIZE", int, 100, "`100`", "companies per pollenation run"),
    Setting("SIGNAL9_POLLENATION_MAX_RUNS", int, 2, "`2`",
            "pollenation runs in flight at once (the sensor's throttle)"),
    Setting("SIGNAL9_LOG_FORMAT", str, None, "unset (`json` in the image)",
            "`json`: every `signal9.*` log record also goes to stdout as one JSON object with its facts as fields "
            "(CloudWatch Logs Insights queries in RUNBOOK.md)"),
    Setting("SIGNAL9_POLLENATION_HISTORY_DAYS", int, 5 * 365 + 1, "`1826` (five years); `30` in the local stack",
            "daily-bar history a pollenation run loads per new symbol"),
    Setting("SIGNAL9_BARS_START_DATE", date, date(2024, 1, 2), "`2024-01-02`", "first date partition of `ohlc_bars`"),
    Setting("SIGNAL9_INTRADAY_WATCHLIST", str, "SPY,AAPL,MSFT,BTC/USD,ETH/USD", "`SPY,AAPL,MSFT,BTC/USD,ETH/USD`",
            "symbols of the intraday timeframes, or `all`"),
    Setting("SIGNAL9_BARS_WORKERS", int, 4, "`4`", "concurrent request streams of a bars run"),
    Setting("SIGNAL9_SETTLE_SESSIONS", str, "1,5", "`1,5`", "the settle pass fetches a date's bars again on the "
            "morning (12:30 UTC) of these XNYS sessions after it, to keep Alpaca's revisions; empty: never"),
    Setting("SIGNAL9_IO_MANAGER_BUCKET", str, None, "unset: local files",
            "S3 bucket for step outputs (prefix `dagster/io/`), so a run re-executed in another ECS task finds them"),
    Setting("SIGNAL9_HOME", str, None, "`./.signal9`",
            "local stack state: settings, pids, logs, dynalite data, Dagster home", "local"),
    Setting("SIGNAL9_SANDBOX_URL", str, None, "written by `up`", "the sandbox, for its test hooks", "local"),
    Setting("SIGNAL9_SANDBOX_API_KEY", str, None, "generated by `up`",
            "the key the sandbox accepts (`python -m signal9_devstack.sandbox`)", "local"),
    Setting("SIGNAL9_SANDBOX_SECRET_KEY", str, None, "generated by `up`", "the secret the sandbox accepts", "local"),
    Setting("ALPACA_API_KEY_ID", str, None, "unset",
            "`provision` only: the key stored in the secret when it is created or updated", "local"),
    Setting("ALPACA_API_SECRET_KEY", str, None, "unset", "`provision` only: the secret key stored with it", "local"),
    Setting("SIGNAL9_DYNALITE_BIN", str, None,
            "`signal9_devstack/local/dynalite.js` (npm's dynalite, kept alive when a client aborts mid-request)",
            "the dynalite executable the local stack starts", "local"),
    Setting("SIGNAL9_FAILPOINT", str, None, "unset",
            "tests only: kill the process at a named crash point, or at the Nth pass of a counted one "
            "(`dynamodb.write#17`; `signal9_pipeline/failpoints.py`)", "local"),
    Setting("DAGSTER_HOME", str, None, "`.signal9/dagster` locally; `/opt/dagster/home` in the image",
            "Dagster instance folder (configured by `dagster.yaml`)", "external"),
    Setting("MALLOC_ARENA_MAX", int, 2, "`2` (glibc's own default: 8 per core)",
            "glibc malloc arenas of a process: read by glibc when a process starts, and applied by "
            "`signal9_pipeline/memory.py` when the bars code loads (it keeps a universe bars run under 512 MB)",
            "external"),
    # Production only: read by deploy/dagster.yaml and deploy/workspace.yaml.
    # Production only: read by deploy/dagster.yaml and deploy/workspace.yaml (forwarded: a run task stores its own
    # events in the same database and its compute logs in the same bucket).
    *(Setting(name, str, None, "-", meaning, "deploy", forward=forward) for name, meaning, forward in (
        ("DAGSTER_PG_HOST", "host of the RDS PostgreSQL database of Dagster's runs, events and schedules", True),
        ("DAGSTER_PG_PORT", "its port", True),
        ("DAGSTER_PG_USERNAME", "its user", True),
        ("DAGSTER_PG_DB", "its database name", True),
        ("DAGSTER_PG_PASSWORD", "its password, injected by ECS from Secrets Manager (into run tasks as an ECS "
                                "secret)", False),
        ("DAGSTER_PG_PASSWORD_SECRET_ARN", "that secret's ARN, which the run launcher injects into run tasks", False),
        ("DAGSTER_S3_BUCKET", "bucket of the step compute logs (prefix `dagster/compute-logs/`)", True),
        ("SIGNAL9_RUN_TASK_ROLE_ARN", "task role of run tasks (`deploy/iam/run-task-policy.json`)", False),
        ("SIGNAL9_RUN_EXECUTION_ROLE_ARN", "execution role of run tasks", False),
        ("SIGNAL9_RUN_LOG_GROUP", "CloudWatch Logs group of run tasks", False),
        ("SIGNAL9_CODE_SERVER_HOST", "where the webserver and daemon reach the gRPC code server", False),
        ("SIGNAL9_CODE_SERVER_PORT", "its port", False),
    )),
)
BY_NAME = {s.name: s for s in REGISTRY}


class SettingError(ValueError):
    """A setting's variable holds a value of the wrong type; the message names it and what it must be."""


def parse(setting: Setting, raw: str) -> Any:
    """The typed value of a variable's text; SettingError naming the variable when it does not parse."""
    try:
        if setting.kind is int:
            return int(raw)
        if setting.kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if setting.kind is date:
            return date.fromisoformat(raw)
        if setting.kind is dict:
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError(raw)
            return value
    except ValueError:
        expected = {int: "an integer", bool: "true or false", date: "a date YYYY-MM-DD",
                    dict: "a JSON object"}[setting.kind]
        raise SettingError(f"environment variable {setting.name}={raw!r} must be {expected}") from None
    return raw


def get(name: str, environ: dict[str, str] | None = None) -> Any:
    """A registered setting's value: its variable parsed to the setting's type, or its default when unset or empty."""
    setting = BY_NAME.get(name)
    if setting is None:
        raise KeyError(f"{name} is not a registered setting: declare it in signal9_pipeline/settings.py REGISTRY")
    raw = (os.environ if environ is None else environ).get(name)
    return setting.default if raw in (None, "") else parse(setting, raw)


def default(name: str) -> Any:
    """A registered setting's default (what a resource field holds when it is built without its variable)."""
    setting = BY_NAME.get(name)
    if setting is None:
        raise KeyError(f"{name} is not a registered setting: declare it in signal9_pipeline/settings.py REGISTRY")
    return setting.default


def text(value: Any) -> str:
    """A value as its variable would spell it (`get` reads it back as the same value; None is the empty string)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def export_defaults(names: Iterable[str], environ: MutableMapping[str, str] | None = None) -> None:
    """Give each of these variables that is unset or empty its registered default, spelled as `get` reads it.

    Dagster resolves a resource field's `dg.EnvVar` when a run starts and fails when the variable is unset, and
    `dg.EnvVar` has no default: exporting the registry's defaults once, where the code location loads, lets
    every field be an `EnvVar` while an unset variable still means its documented default.
    """
    environ = os.environ if environ is None else environ
    for name in names:
        if not environ.get(name):
            environ[name] = text(default(name))


def problems(environ: dict[str, str]) -> list[str]:
    """One line per set variable whose value does not parse (what the image's preflight check reports)."""
    found = []
    for setting in REGISTRY:
        raw = environ.get(setting.name)
        if raw:
            try:
                parse(setting, raw)
            except SettingError as exc:
                found.append(str(exc))
    return found


def names(*scopes: str) -> list[str]:
    return [s.name for s in REGISTRY if s.scope in scopes]


def forwarded() -> list[str]:
    """The variables the ECS run launcher copies into every run task (`deploy/dagster.yaml` env_vars)."""
    return [s.name for s in REGISTRY if s.forwarded]


def markdown(*scopes: str) -> str:
    """README's table of the settings of these scopes."""
    if scopes == ("deploy",):
        rows = (["| variable | meaning |", "| --- | --- |"]
                + [f"| `{s.name}` | {s.meaning} |" for s in REGISTRY if s.scope == "deploy"])
    else:
        rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
        rows += [f"| `{s.name}` | {s.shown} | {s.meaning} |" for s in REGISTRY if s.scope in scopes]
    return "\n".join(rows)


@dataclass(frozen=True)
class Settings:
    assets_table: str
    market_data_table: str
    event_bus: str
    alpaca_secret_id: str
    alpaca_trading_url: str | None
    alpaca_data_url: str | None
    alpaca_paper: bool
    alpaca_feed: str
    rate_limit_per_minute: int
    rate_limiter_url: str
    request_timeout_s: int
    max_attempts: int
    metrics_namespace: str

    @classmethod
    def from_env(cls) -> Settings:
        return cls(**{field: get(name) for field, name in _SETTINGS_FIELDS.items()})


_SETTINGS_FIELDS = {  # Settings field -> its variable
    "assets_table": "SIGNAL9_ASSETS_TABLE", "market_data_table": "SIGNAL9_MARKET_DATA_TABLE",
    "event_bus": "SIGNAL9_EVENT_BUS", "alpaca_secret_id": "ALPACA_SECRET_ID",
    "alpaca_trading_url": "ALPACA_TRADING_URL", "alpaca_data_url": "ALPACA_DATA_URL", "alpaca_paper": "ALPACA_PAPER",
    "alpaca_feed": "ALPACA_FEED", "rate_limit_per_minute": "ALPACA_RATE_LIMIT_PER_MINUTE",
    "rate_limiter_url": "SIGNAL9_RATE_LIMITER_URL", "request_timeout_s": "ALPACA_REQUEST_TIMEOUT_S",
    "max_attempts": "ALPACA_MAX_ATTEMPTS", "metrics_namespace": "SIGNAL9_METRICS_NAMESPACE",
}


if __name__ == "__main__":  # python -m signal9_pipeline.settings: README's two tables
    print(markdown("run", "local", "external"))
    print()
    print(markdown("deploy"))
