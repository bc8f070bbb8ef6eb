"""new_symbols_sensor with a real Dagster instance and a real (dynalite) table."""

import dagster as dg
import pytest

from signal9_pipeline.pollenation.batches import batch_key, plan_batches
from signal9_pipeline.pollenation.sensor import BATCH_TAG, COUNT_TAG, new_symbols_sensor
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline_tests.support import list_companies


def add_pending(count: int) -> list[str]:
    """`count` new companies, pending pollenation; their asset ids."""
    return sorted(list_companies({f"N{i:05d}": "us_equity" for i in range(count)}).values())


def tick(instance) -> list[dg.RunRequest]:
    context = dg.build_sensor_context(instance=instance, resources={"dynamodb": DynamoDBResource.from_settings()})
    result = new_symbols_sensor(context)
    return result if isinstance(result, list) else []


def submit(instance, requests: list[dg.RunRequest], status=dg.DagsterRunStatus.NOT_STARTED) -> list[dg.DagsterRun]:
    """What the daemon does with a tick's requests: create the runs (tags carry the run key)."""
    from signal9_pipeline.pollenation.jobs import pollenation_job

    runs = []
    for request in requests:
        run = instance.create_run_for_job(pollenation_job, run_config=request.run_config,
                                          tags={**request.tags, "dagster/run_key": request.run_key}, status=status)
        runs.append(run)
    return runs


def test_250_new_symbols_become_three_runs_and_a_second_tick_adds_none(sync_env, monkeypatch):
    monkeypatch.setenv("SIGNAL9_POLLENATION_MAX_RUNS", "10")
    symbols = add_pending(250)
    with dg.instance_for_test() as instance:
        requests = tick(instance)
        assert [int(r.tags["signal9/symbol_count"]) for r in requests] == [100, 100, 50]
        covered = [i for r in requests for i in r.run_config["ops"]["announce_new_symbols"]["config"]["asset_ids"]]
        assert sorted(covered) == symbols
        assert all(set(r.tags) == {BATCH_TAG, COUNT_TAG} and all(len(v) <= 64 for v in r.tags.values())
                   for r in requests)
        # Evaluated again before the daemon created the runs: the same run keys, which Dagster drops.
        assert {r.run_key for r in tick(instance)} == {r.run_key for r in requests}
        submit(instance, requests)
        assert tick(instance) == []  # the same tick again: every symbol is covered by a run in flight


def test_a_failed_runs_symbols_get_a_new_run_key_on_a_later_tick(sync_env, monkeypatch):
    monkeypatch.setenv("SIGNAL9_POLLENATION_MAX_RUNS", "10")
    add_pending(150)
    with dg.instance_for_test() as instance:
        first = submit(instance, tick(instance))
        instance.report_run_failed(first[1])
        retry = tick(instance)
        assert len(retry) == 1 and retry[0].run_config == first[1].run_config
        assert retry[0].run_key == f"{first[1].tags[BATCH_TAG]}:1" != first[1].tags["dagster/run_key"]


def test_runs_in_flight_are_throttled(sync_env, monkeypatch):
    monkeypatch.setenv("SIGNAL9_POLLENATION_MAX_RUNS", "2")
    add_pending(450)
    with dg.instance_for_test() as instance:
        first = tick(instance)
        assert len(first) == 2
        runs = submit(instance, first)
        assert tick(instance) == []
        instance.report_run_failed(runs[0])  # one slot frees up
        assert len(tick(instance)) == 1


def test_nothing_pending_is_a_skip(sync_env):
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"dynamodb": DynamoDBResource.from_settings()})
        assert isinstance(new_symbols_sensor(context), dg.SkipReason)


def test_batches_leave_out_symbols_in_flight_and_keys_are_content_hashes():
    assert plan_batches(["C", "A", "B", "D"], {"B"}, 2, 5) == [["A", "C"], ["D"]]
    assert plan_batches(["A", "B", "C"], set(), 1, 2) == [["A"], ["B"]]
    assert batch_key(["B", "A"]) == batch_key(["A", "B"]) != batch_key(["A"])
    with pytest.raises(ValueError):
        plan_batches(["A"], set(), 0, 1)
