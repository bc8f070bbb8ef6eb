"""Alpaca misbehaving under the whole pipeline: every fault ends in the right tables or a typed failure.

The asset sync, an `ohlc_bars` backfill and a pollenation run go through a
sandbox of the test's own (real HTTP, real alpaca-py clients) while its fault
hooks answer 429s, 5xx bursts, hung connections, malformed JSON, bodies cut
short, an empty list or one missing 40% of the universe. A transient fault must
leave the tables exactly as a fault-free run leaves them; a persistent one must
fail the run with the typed error that names the cause and leave the tables as
they were. Each outcome goes into the reliability ledger.
"""

from __future__ import annotations

import http.client
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from signal9_pipeline_tests.conftest import auth_headers
from signal9_pipeline_tests.reliability.faults import (
    BARS_FIRST,
    BARS_LAST,
    BARS_PATHS,
    failure_cause,
    pipeline_universe,
    run_pipeline,
    step_failure,
    steps_retried,
)
from signal9_pipeline_tests.reliability.tables import comparable, items_lost, scan_tables
from signal9_pipeline_tests.support import (
    check_results,
    materialize_bars,
    run_sync,
)


# --- the sandbox's fault of a body cut short -------------------------------------------------------
def test_the_sandbox_cuts_a_body_short_of_its_content_length_and_hangs_up(sandbox_factory):
    server = sandbox_factory([], rate_limit_per_minute=1000)
    faults = f"{server.url}/_sandbox/faults"
    assert requests.post(faults, json={"truncate_rate": 1.5}, timeout=10).status_code == 422
    requests.post(faults, json={"truncate_rate": 1.0}, timeout=10).raise_for_status()
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.request("GET", "/v2/calendar?start=2024-03-04&end=2024-03-29", headers=auth_headers())
    answer = connection.getresponse()
    with pytest.raises(http.client.IncompleteRead) as cut:
        answer.read()
    announced = int(answer.headers["Content-Length"])
    assert answer.status == 200 and len(cut.value.partial) == announced // 2 > 0
    requests.post(f"{server.url}/_sandbox/reset", timeout=10).raise_for_status()
    whole = requests.get(f"{server.url}/v2/calendar?start=2024-03-04&end=2024-03-29", headers=auth_headers(),
                         timeout=10)
    # March 4-29, 2024: 19 sessions (Good Friday closed)
    assert len(whole.content) == announced and len(whole.json()) == 19


# --- transient faults: the retries absorb them, the tables equal a fault-free run's ------------------
@dataclass(frozen=True)
class Transient:
    name: str
    faults: dict[str, Any]
    settings: dict[str, str] = field(default_factory=dict)


TRANSIENT = [
    Transient("429 storm: 60% of requests answered 429", {"error_rate": 0.6, "error_statuses": [429]}),
    Transient("500/503 burst: half the requests fail", {"error_rate": 0.5, "error_statuses": [500, 503]}),
    Transient("hung connections: every 3rd request never answers (read timeout 1 s)", {"hang_s": 120, "hang_every": 3},
              {"ALPACA_REQUEST_TIMEOUT_S": "1"}),
    Transient("malformed JSON in half the answers", {"malformed_rate": 0.5}),
    Transient("truncated pages: half the bodies cut short of their Content-Length", {"truncate_rate": 0.5}),
]


@pytest.mark.parametrize("case", TRANSIENT, ids=lambda c: c.name.split(":")[0])
def test_a_transient_fault_leaves_the_tables_a_fault_free_run_leaves(case: Transient, alpaca, reference, access_log,
                                                                      monkeypatch, ledger):
    for name, value in case.settings.items():
        monkeypatch.setenv(name, value)
    alpaca.set_faults(**case.faults)
    results = run_pipeline()
    faults_seen = access_log.retries()
    tables = comparable(scan_tables())
    lost = items_lost(reference, tables)
    ok = all(r.success for r in results) and tables == reference
    ledger.record("alpaca", case.name, "tables equal a fault-free run" if ok else "differs from a fault-free run",
                  lost=lost, times=faults_seen)
    assert [r.success for r in results] == [True, True, True]
    assert faults_seen >= 1  # the faults really hit the runs
    assert not steps_retried(results)  # the access layer absorbed every fault: no step failed or waited for a retry
    assert tables == reference and lost == 0
    assert all(check_results(results[1]).values())


# --- persistent faults on the bars API: a typed failure, the tables as they were ---------------------
@dataclass(frozen=True)
class Persistent:
    name: str
    faults: dict[str, Any]
    error: str  # the typed error the run must fail with
    names: str  # what its message must say
    settings: dict[str, str] = field(default_factory=dict)


PERSISTENT = [
    Persistent("503 outage of the bars API", {"error_rate": 1.0, "error_statuses": [503]},
               "AlpacaUnavailableError", "503 on /v2/stocks/bars"),
    Persistent("bars API hangs on every request (read timeout 1 s)", {"hang_s": 120, "hang_every": 1},
               "AlpacaTimeoutError", "no answer from /v2/stocks/bars within 1 s", {"ALPACA_REQUEST_TIMEOUT_S": "1"}),
    Persistent("every bars page cut short", {"truncate_rate": 1.0},
               "AlpacaUnavailableError", "/v2/stocks/bars cut short"),
]


@pytest.mark.parametrize("case", PERSISTENT, ids=lambda c: c.name)
def test_a_persistent_bars_fault_fails_typed_and_leaves_the_tables(case: Persistent, alpaca, access_log, monkeypatch,
                                                                    ledger):
    monkeypatch.setenv("ALPACA_MAX_ATTEMPTS", "3")
    for name, value in case.settings.items():
        monkeypatch.setenv(name, value)
    assert run_sync().success and materialize_bars("1Day", BARS_FIRST, BARS_LAST).success
    before, clean_requests = scan_tables(), access_log.requests_to(BARS_PATHS)
    alpaca.set_faults(**case.faults, paths=BARS_PATHS)
    result = materialize_bars("1Day", BARS_FIRST, BARS_LAST)
    after, faulted_requests = scan_tables(), access_log.requests_to(BARS_PATHS) - clean_requests
    error, message = failure_cause(result) if not result.success else ("none", "")
    failed_typed = error == case.error and case.names in message
    ledger.record("alpaca", case.name,
                  f"{case.error}, tables untouched" if failed_typed and after == before else "not as expected",
                  lost=items_lost(before, after), times=faulted_requests)
    assert not result.success
    assert (error, case.names in message) == (case.error, True), message
    assert faulted_requests == 3  # the first page's ALPACA_MAX_ATTEMPTS attempts, then the run stops
    assert after == before


def test_a_persistent_outage_of_the_asset_list_fails_the_sync_without_step_retries(alpaca, access_log, monkeypatch,
                                                                                      ledger):
    """Request retries and step retries are sized together: once the access layer's attempts are spent on an
    outage, the step fails naming it, instead of waiting through step retries (minutes) for the same answer."""
    monkeypatch.setenv("ALPACA_MAX_ATTEMPTS", "3")
    before = scan_tables()
    alpaca.set_faults(error_rate=1.0, error_statuses=[503], paths=["/v2/assets"])
    result = run_sync()
    error, message = failure_cause(result)
    ledger.record("alpaca", "503 outage of /v2/assets",
                  f"{error} after {access_log.requests_to(['/v2/assets'])} request(s)",
                  lost=items_lost(before, scan_tables()), times=access_log.requests_to(["/v2/assets"]))
    assert not result.success and error == "AlpacaUnavailableError" and "503 on /v2/assets" in message
    assert access_log.requests_to(["/v2/assets"]) == 3  # one step's attempts, no step retry on top
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert scan_tables() == before


# --- Alpaca's list itself is wrong: the mass-delisting guard stops it before anything is written -------
@pytest.mark.parametrize("keep_fraction,name", [(0.0, "/v2/assets answers an empty list"),
                                                (0.6, "/v2/assets misses 40% of the universe")])
def test_an_empty_or_shrunken_asset_list_writes_nothing(keep_fraction, name, alpaca, default_universe, ledger):
    universe = pipeline_universe(default_universe)
    assert run_sync().success
    before = scan_tables()
    alpaca.put_universe(random.Random(4).sample(universe, int(len(universe) * keep_fraction)))
    result = run_sync()
    after = scan_tables()
    guard = next(e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
                 and e.event_specific_data.check_name == "mass_delisting_guard")
    ledger.record("alpaca", name,
                  "mass_delisting_guard fails the run, nothing written" if not result.success else "written",
                  lost=items_lost(before, after), times=1)
    assert not result.success and check_results(result)["mass_delisting_guard"] is False
    assert guard.description.startswith("drop of ") and guard.metadata["drop_fraction"].value >= 0.3
    failure = step_failure(result)
    assert (failure.step_key == "validated_assets"
            and "mass_delisting_guard" in failure.event_specific_data.error.message)
    assert not result.asset_materializations_for_node("assets_table")
    assert after == before
