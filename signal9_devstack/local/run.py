"""`make run`: the daily pipeline once, end to end, against the local stack.

The asset sync, one tick of the new-symbols sensor with the pollenation runs it
asks for, yesterday's 1Day market-data partition and its corporate actions; a summary of each.
"""

from __future__ import annotations

import os

from signal9_devstack.local import stack
from signal9_pipeline.market_data.days import last_session
from signal9_pipeline.resources import metrics

SHOWN = ("dagster/row_count", "quarantined", "listed", "new", "updated", "deactivated", "reactivated", "renamed",
         "unchanged", "write_requests", "requests_used", "published", "bars_written", "bars_held_back",
         "bars_per_request", "forward_splits", "reverse_splits", "cash_dividends", "events_published")


def run_pipeline(*, rate_limit_per_minute: int, seed: int, universe: str | None) -> int:
    running = stack.status()
    was_running = bool(running) and all(running.values())
    env = stack.up(rate_limit_per_minute=rate_limit_per_minute, seed=seed, universe=universe)
    os.environ.update(env)
    try:
        import warnings

        import dagster as dg

        # Dagster's own notes on beta APIs, not ours to act on
        warnings.filterwarnings("ignore", category=dg.BetaWarning)
        from signal9_pipeline.definitions import defs

        with dg.DagsterInstance.get() as instance:
            sync = defs.resolve_job_def("asset_sync_job").execute_in_process(instance=instance, raise_on_error=False)
            print(summarize("asset_sync_job", sync))
            if not sync.success:
                return 1
            results = [tick_pollenation(defs, instance)]
            day = last_session().isoformat()
            bars = defs.resolve_job_def("daily_bars_job").execute_in_process(
                instance=instance, raise_on_error=False,
                partition_key=dg.MultiPartitionKey({"date": day, "timeframe": "1Day"}))
            print(summarize(f"daily_bars_job {day}|1Day", bars))
            actions = defs.resolve_job_def("corporate_actions_job").execute_in_process(
                instance=instance, raise_on_error=False, partition_key=day)
            print(summarize(f"corporate_actions_job {day}", actions))
            results += [bars.success, actions.success]
        return 0 if all(results) else 1
    finally:
        metrics.flush()  # the last run's datapoints, while the local CloudWatch still listens
        if not was_running:
            stack.down()


def tick_pollenation(defs, instance) -> bool:
    """One evaluation of new_symbols_sensor and the pollenation runs it requests."""
    import dagster as dg

    from signal9_pipeline.resources.dynamodb import DynamoDBResource

    sensor = defs.resolve_sensor_def("new_symbols_sensor")
    requested = sensor(dg.build_sensor_context(instance=instance,
                                               resources={"dynamodb": DynamoDBResource.from_settings()}))
    if not isinstance(requested, list):
        print(f"new_symbols_sensor: {requested.skip_message}")
        return True
    ok = True
    for request in requested:
        result = defs.resolve_job_def("pollenation_job").execute_in_process(
            instance=instance, raise_on_error=False, run_config=request.run_config,
            tags={**request.tags, "dagster/run_key": request.run_key})
        print(summarize(f"pollenation_job ({request.tags['signal9/symbol_count']} symbols)", result))
        ok &= result.success
    return ok


def summarize(name: str, result) -> str:
    lines = [f"{name} run {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}"]
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        figures = ", ".join(f"{k.split('/')[-1]}={mat.metadata[k].value}" for k in SHOWN if k in mat.metadata)
        lines.append(f"  {mat.asset_key.to_user_string()}{f' [{mat.partition}]' if mat.partition else ''}: {figures}")
    for event in result.all_events:
        if event.event_type_value == "STEP_OUTPUT" or not event.step_key:
            continue
        if event.is_step_failure:
            lines.append(f"  failed step {event.step_key}: {event.event_specific_data.error.message.strip()[:500]}")
    return "\n".join(lines)
