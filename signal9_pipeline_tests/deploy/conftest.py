"""Fixtures of the deployment tests: real PostgreSQL and Redis servers, one each per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from signal9_pipeline_tests.deploy.services import Service, start_postgres, start_redis

PG_USER, PG_PASSWORD, PG_DB = "dagster", "pg-test-password-7f3a", "dagster"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Service]:
    service = start_postgres(PG_USER, PG_PASSWORD, PG_DB)
    yield service
    service.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Service]:
    service = start_redis()
    yield service
    service.stop()


@pytest.fixture
def postgres_env(postgres: Service) -> dict[str, str]:
    return {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(postgres.port), "DAGSTER_PG_USERNAME": PG_USER,
            "DAGSTER_PG_PASSWORD": PG_PASSWORD, "DAGSTER_PG_DB": PG_DB}
