"""Fixtures of the reliability suite: the ledger every fault is recorded in."""

from __future__ import annotations

from typing import Iterator

import pytest

from signal9_pipeline_tests.reliability.ledger import Ledger


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
