"""The 04:00 UTC schedule requests the asset sync job."""

from datetime import datetime, timezone

import dagster as dg

from signal9_pipeline.definitions import defs


def test_daily_schedule_ticks_at_four_utc_and_requests_the_sync():
    schedule = defs.resolve_schedule_def("daily_asset_sync_schedule")
    assert schedule.cron_schedule == "0 4 * * *" and schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance,
                                            scheduled_execution_time=datetime(2026, 11, 24, 4, 0, tzinfo=timezone.utc))
        result = schedule.evaluate_tick(context)
    assert [r.job_name or schedule.job_name for r in result.run_requests] == ["asset_sync_job"]
    assert schedule.job_name == "asset_sync_job"


def test_the_job_holds_the_sync_assets_in_lineage_order():
    job = defs.resolve_job_def("asset_sync_job")
    assert {n.name for n in job.graph.nodes} == {"alpaca_assets", "validated_assets", "assets_table",
                                                 "asset_status_events"}
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("assets_table")).parent_keys == {dg.AssetKey("validated_assets")}
    assert graph.get(dg.AssetKey("validated_assets")).parent_keys == {dg.AssetKey("alpaca_assets")}
    assert graph.get(dg.AssetKey("asset_status_events")).parent_keys == {dg.AssetKey("assets_table")}
