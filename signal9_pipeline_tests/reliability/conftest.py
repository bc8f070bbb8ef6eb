"""Fixtures of the reliability suite: the ledger every fault is recorded in."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from signal9_pipeline_tests.reliability.faults import (
    FAULT_SEED,
    AccessLog,
    Alpaca,
    fault_free_tables,
    fresh_tables,
    pipeline_universe,
    point_alpaca_at,
)
from signal9_pipeline_tests.reliability.ledger import Ledger
from signal9_pipeline_tests.reliability.tables import Tables


@pytest.fixture(scope="session")
def ledger_session() -> Iterator[Ledger]:
    ledger = Ledger()
    yield ledger
    ledger.write()


@pytest.fixture
def ledger(ledger_session: Ledger, request: pytest.FixtureRequest):
    """`ledger.record(area, fault, outcome, lost=0, times=1)`, tagged with the test's name."""

    class _Bound:
        def record(self, area: str, fault: str, outcome: str, lost: int = 0, times: int = 1) -> None:
            ledger_session.record(area, fault, outcome, lost, times, test=request.node.nodeid)

    return _Bound()


@pytest.fixture
def reference(local_stack, default_universe) -> Tables:
    return fault_free_tables(local_stack, pipeline_universe(default_universe))


@pytest.fixture
def alpaca(stack_env, sandbox_factory, monkeypatch, default_universe) -> Alpaca:
    """Empty tables of the test's own, and a seeded sandbox with the test universe that the pipeline calls."""
    fresh_tables(monkeypatch)
    server = sandbox_factory(pipeline_universe(default_universe), rate_limit_per_minute=100_000, seed=FAULT_SEED)
    point_alpaca_at(server, monkeypatch)
    return Alpaca(server)


@pytest.fixture
def access_log(caplog) -> AccessLog:
    caplog.set_level(logging.INFO, logger="signal9.alpaca")
    return AccessLog(caplog)
