"""Fixtures of the contract tests: the replay server standing in for Alpaca's market-data host."""

import pytest

from signal9_pipeline_tests.contract.replay import ReplayServer


@pytest.fixture(scope="module")
def replay():
    server = ReplayServer()
    yield server
    server.shutdown()
    server.server_close()
