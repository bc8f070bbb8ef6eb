"""alpaca_assets materialized through Dagster against the local stack."""

import json

import dagster as dg

from signal9_pipeline.assets_sync.assets import alpaca_assets
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.metrics import MetricsResource


def test_alpaca_assets_fetches_the_whole_list_with_counts(stack_env, default_universe):
    result = dg.materialize([alpaca_assets], resources={"alpaca": AlpacaResource.from_settings(),
                                                        "metrics": MetricsResource.from_settings()})
    assert result.success
    assert result.output_for_node("alpaca_assets") == default_universe
    metadata = result.asset_materializations_for_node("alpaca_assets")[0].metadata
    assert metadata["dagster/row_count"].value == len(default_universe)
    assert metadata["class/crypto"].value == sum(a["class"] == "crypto" for a in default_universe)
    assert metadata["status/inactive"].value == sum(a["status"] == "inactive" for a in default_universe)
    assert metadata["requests_used"].value == 1


def test_runs_can_log_json_lines(stack_env, capfd, default_universe):
    from signal9_pipeline.definitions import defs

    result = defs.resolve_job_def("asset_sync_job").execute_in_process(
        run_config={"loggers": {"json": {"config": {"log_level": "INFO"}}}},
        asset_selection=[dg.AssetKey("alpaca_assets")])
    assert result.success
    lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert any(r["dagster_meta"]["orig_message"]
               == f"fetched {len(default_universe)} assets from Alpaca in 1 request(s)" for r in records)
