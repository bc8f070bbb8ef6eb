"""The pipeline under faults, end to end: a sandbox of the test's own, fresh tables, the runs, their failures.

Shared by the Alpaca and AWS fault tests (fixtures `alpaca`, `reference`, `access_log` in
conftest.py). The tables are compared through `tables.py`, as the crash tests compare them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pytest
import requests

from signal9_devstack.local.provision import ASSETS_INDEXES, TABLE_KEYS, ensure_table
from signal9_devstack.sandbox import SandboxServer, start_in_thread
from signal9_pipeline.logs import fields_of
from signal9_pipeline.pollenation.sensor import pending_companies
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline_tests.conftest import TEST_KEY, TEST_SECRET
from signal9_pipeline_tests.reliability.tables import Tables, comparable, scan_tables
from signal9_pipeline_tests.support import materialize_bars, point_alpaca_at, run_sync, small_universe

LISTED_EQUITIES = 250
BARS_FIRST, BARS_LAST = "2024-03-04", "2024-03-06"  # three sessions of 260 symbols: one stocks page, one crypto page
POLLENATED = 8
BARS_PATHS = ["/v2/stocks/bars", "/v1beta3/crypto/us/bars"]
FAULT_SEED = 11  # the sandbox's fault draws, in request order: the same faults hit the same requests every time


# --- the pipeline, end to end ---------------------------------------------------------------------
def pipeline_universe(default_universe: list[dict]) -> list[dict]:
    return small_universe(default_universe, n=LISTED_EQUITIES)


def pollenate(asset_ids: list[str]) -> dg.ExecuteInProcessResult:
    from signal9_pipeline.definitions import defs

    return defs.resolve_job_def("pollenation_job").execute_in_process(
        run_config={"ops": {"announce_new_symbols": {"config": {"asset_ids": asset_ids}}}}, raise_on_error=False)


def run_pipeline() -> list[dg.ExecuteInProcessResult]:
    """The daily sync, a 1Day backfill and the pollenation of the first new symbols; each run's result."""
    results = [run_sync(), materialize_bars("1Day", BARS_FIRST, BARS_LAST)]
    if results[0].success:
        results.append(pollenate(pending_companies(DynamoDBResource.from_settings())[:POLLENATED]))
    return results


def fresh_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the pipeline at a new, empty assets table and market-data table."""
    suffix = uuid.uuid4().hex[:10]
    assets, market = f"signal9-assets-faults-{suffix}", f"signal9-bars-faults-{suffix}"
    ensure_table(assets, *TABLE_KEYS["assets"], indexes=ASSETS_INDEXES)
    ensure_table(market, *TABLE_KEYS["market_data"])
    monkeypatch.setenv("SIGNAL9_ASSETS_TABLE", assets)
    monkeypatch.setenv("SIGNAL9_MARKET_DATA_TABLE", market)


_fault_free: dict[str, Tables] = {}


def fault_free_tables(local_stack: dict[str, str], universe: list[dict]) -> Tables:
    """What the pipeline writes for `universe` when nothing goes wrong (computed once per session)."""
    if "tables" not in _fault_free:
        # The faulted runs' seed: the sandbox's corporate actions (and so its raw split cliffs) follow its seed.
        server = start_in_thread(universe, api_key=TEST_KEY, secret_key=TEST_SECRET, rate_limit_per_minute=100_000,
                                 seed=FAULT_SEED)
        try:
            with pytest.MonkeyPatch.context() as patch:
                for key, value in local_stack.items():
                    patch.setenv(key, value)
                fresh_tables(patch)
                point_alpaca_at(server, patch)
                assert all(result.success for result in run_pipeline())
                _fault_free["tables"] = comparable(scan_tables())
        finally:
            server.shutdown()
            server.server_close()
    return _fault_free["tables"]


# --- an Alpaca sandbox of the test's own -----------------------------------------------------------
@dataclass
class Alpaca:
    server: SandboxServer

    def set_faults(self, **faults: Any) -> None:
        requests.post(f"{self.server.url}/_sandbox/faults", json=faults, timeout=10).raise_for_status()

    def put_universe(self, universe: list[dict]) -> None:
        requests.put(f"{self.server.url}/_sandbox/universe", json=universe, timeout=60).raise_for_status()


@dataclass
class AccessLog:
    """The access layer's JSON log lines (`signal9.alpaca`): every request and every retry it made."""

    caplog: pytest.LogCaptureFixture

    def entries(self, event: str) -> list[dict]:
        return [fields_of(r) for r in self.caplog.records
                if r.name == "signal9.alpaca" and getattr(r, "event", None) == event]

    def retries(self) -> int:
        return len(self.entries("alpaca_retry"))

    def requests_to(self, paths: list[str]) -> int:
        return sum(e["path"] in paths for e in self.entries("alpaca_request"))


def steps_retried(results: list[dg.ExecuteInProcessResult]) -> list[str]:
    return [e.step_key for r in results for e in r.all_events
            if e.event_type_value in ("STEP_FAILURE", "STEP_UP_FOR_RETRY")]


def step_failure(result: dg.ExecuteInProcessResult) -> dg.DagsterEvent:
    return next(e for e in result.all_events if e.is_step_failure)


def failure_cause(result: dg.ExecuteInProcessResult) -> tuple[str, str]:
    """The root cause of the run's first step failure (under Dagster's wrappers): its class name and message."""
    error = step_failure(result).event_specific_data.error
    while error.cause is not None:
        error = error.cause
    return error.cls_name, error.message
