"""`make run`: the daily pipeline once, end to end, against the local stack."""

from __future__ import annotations

import os

from signal9_pipeline.local import stack


def run_pipeline(*, rate_limit_per_minute: int, seed: int, universe: str | None) -> int:
    was_running = bool(stack.status()) and all(stack.status().values())
    env = stack.up(rate_limit_per_minute=rate_limit_per_minute, seed=seed, universe=universe)
    os.environ.update(env)
    try:
        import dagster as dg

        from signal9_pipeline.definitions import defs

        with dg.DagsterInstance.get() as instance:
            result = defs.resolve_job_def("asset_sync_job").execute_in_process(instance=instance, raise_on_error=False)
        print(summarize(result))
        return 0 if result.success else 1
    finally:
        if not was_running:
            stack.down()


def summarize(result) -> str:
    lines = [f"asset_sync_job run {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}"]
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        shown = ("dagster/row_count", "quarantined", "listed", "new", "updated", "deactivated", "reactivated", "renamed",
                 "unchanged", "write_requests", "requests_used")
        figures = ", ".join(f"{k.split('/')[-1]}={mat.metadata[k].value}" for k in shown if k in mat.metadata)
        lines.append(f"  {mat.asset_key.to_user_string()}: {figures}")
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure:
                lines.append(f"  failed step {event.step_key}: {event.event_specific_data.error.message.strip()}")
    return "\n".join(lines)
