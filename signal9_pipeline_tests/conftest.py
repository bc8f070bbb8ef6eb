"""Shared fixtures: one local stack (sandbox + dynalite + moto) per test session, sandboxes in threads."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from signal9_devstack.local import stack
from signal9_devstack.sandbox import SandboxServer, start_in_thread
from signal9_devstack.sandbox.universe import build_universe
from signal9_pipeline.resources import metrics

TEST_KEY, TEST_SECRET = "PKTESTKEY0000000000", "test-secret-value-0000000000000000000000"
# The session stack allows far more than Alpaca's 200/min so unrelated tests never wait on each
# other; the rate-limit tests start sandboxes of their own with small limits.
STACK_RATE_LIMIT = 100_000


@pytest.fixture(scope="session")
def default_universe() -> list[dict]:
    return build_universe(0)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("signal9-home")
    env = stack.up(home, rate_limit_per_minute=STACK_RATE_LIMIT)
    try:
        yield env
    finally:
        metrics.flush()  # while moto still listens
        metrics.reset()
        stack.down(home)


@pytest.fixture
def stack_env(local_stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The local stack's settings applied to os.environ for one test; the sandbox reset before it."""
    for key, value in local_stack.items():
        monkeypatch.setenv(key, value)
    requests.post(f"{local_stack['SIGNAL9_SANDBOX_URL']}/_sandbox/reset", timeout=10).raise_for_status()
    return local_stack


@pytest.fixture
def sync_env(stack_env, monkeypatch, default_universe):
    """The stack with an empty assets table of this test's own; the sandbox's universe restored afterwards."""
    from signal9_devstack.local.provision import ASSETS_INDEXES, TABLE_KEYS, ensure_table
    from signal9_pipeline_tests.support import put_universe

    table = f"signal9-assets-test-{uuid.uuid4().hex[:10]}"
    ensure_table(table, *TABLE_KEYS["assets"], indexes=ASSETS_INDEXES)
    monkeypatch.setenv("SIGNAL9_ASSETS_TABLE", table)
    yield {**stack_env, "SIGNAL9_ASSETS_TABLE": table}
    put_universe(stack_env, default_universe)


@pytest.fixture
def bars_env(sync_env, monkeypatch):
    """sync_env plus an empty market-data table of this test's own."""
    from signal9_devstack.local.provision import TABLE_KEYS, ensure_table

    table = f"signal9-bars-test-{uuid.uuid4().hex[:10]}"
    ensure_table(table, *TABLE_KEYS["market_data"])
    monkeypatch.setenv("SIGNAL9_MARKET_DATA_TABLE", table)
    return {**sync_env, "SIGNAL9_MARKET_DATA_TABLE": table}


@pytest.fixture
def sandbox_factory() -> Iterator:
    """Start sandboxes in threads of the test process (real HTTP on loopback); all stopped afterwards."""
    servers: list[SandboxServer] = []

    def start(universe: list[dict] | None = None, **kwargs) -> SandboxServer:
        kwargs.setdefault("api_key", TEST_KEY)
        kwargs.setdefault("secret_key", TEST_SECRET)
        server = start_in_thread(universe, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def serving(universe: list[dict]) -> Iterator[SandboxServer]:
    """A sandbox in a thread with `universe` and a generous limit, stopped when the generator closes."""
    server = start_in_thread(list(universe), api_key=TEST_KEY, secret_key=TEST_SECRET,
                             rate_limit_per_minute=STACK_RATE_LIMIT)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def sandbox(default_universe: list[dict]) -> Iterator[SandboxServer]:
    """One sandbox with the default universe and a generous limit, shared by a test module."""
    yield from serving(default_universe)


def auth_headers() -> dict[str, str]:
    return {"APCA-API-KEY-ID": TEST_KEY, "APCA-API-SECRET-KEY": TEST_SECRET}


PROJECT_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(os.environ.get("VIRTUAL_ENV") or PROJECT_ROOT / ".venv") / "bin"
