"""Fixtures for the asset sync: a fresh assets table per test, the sandbox's universe restored afterwards."""

import uuid

import dagster as dg
import pytest
import requests

from signal9_pipeline.local.provision import TABLE_KEYS, ensure_table


@pytest.fixture
def sync_env(stack_env, monkeypatch, default_universe):
    """The stack with an empty assets table of this test's own."""
    table = f"signal9-assets-test-{uuid.uuid4().hex[:10]}"
    ensure_table(table, *TABLE_KEYS["assets"])
    monkeypatch.setenv("SIGNAL9_ASSETS_TABLE", table)
    yield {**stack_env, "SIGNAL9_ASSETS_TABLE": table}
    put_universe(stack_env, default_universe)


def put_universe(env, universe) -> None:
    requests.put(f"{env['SIGNAL9_SANDBOX_URL']}/_sandbox/universe", json=universe, timeout=60).raise_for_status()


def run_sync(allow_mass_delisting: bool = False) -> dg.ExecuteInProcessResult:
    from signal9_pipeline.definitions import defs

    config = {"ops": {"validated_assets": {"config": {"allow_mass_delisting": allow_mass_delisting}}}}
    return defs.resolve_job_def("asset_sync_job").execute_in_process(run_config=config, raise_on_error=False)


def sync_counts(result: dg.ExecuteInProcessResult) -> dict[str, int]:
    metadata = result.asset_materializations_for_node("assets_table")[0].metadata
    return {k: metadata[k].value for k in ("new", "updated", "deactivated", "reactivated", "renamed", "unchanged", "write_requests")}


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.event_specific_data.check_name: e.event_specific_data.passed
            for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
