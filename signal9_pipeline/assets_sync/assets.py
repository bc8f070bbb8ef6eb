"""Dagster wiring of the asset sync."""

import collections
import time

import dagster as dg

from signal9_pipeline.resources.alpaca import AlpacaResource


@dg.asset(
    group_name="asset_sync",
    kinds={"python"},
    pool="alpaca_api",
    description="Every asset Alpaca lists (all statuses and classes), as the API returns them.",
)
def alpaca_assets(context: dg.AssetExecutionContext, alpaca: AlpacaResource) -> dg.Output[list[dict]]:
    started = time.monotonic()
    assets = alpaca.list_assets()
    metadata: dict[str, dg.MetadataValue] = {
        "dagster/row_count": dg.MetadataValue.int(len(assets)),
        "duration_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
    }
    for field in ("class", "status", "exchange"):
        for value, count in sorted(collections.Counter(str(a.get(field)) for a in assets).items()):
            metadata[f"{field}/{value}"] = dg.MetadataValue.int(count)
    context.log.info(f"fetched {len(assets)} assets from Alpaca")
    return dg.Output(assets, metadata=metadata)


asset_sync_job = dg.define_asset_job("asset_sync_job", selection=[alpaca_assets])

defs = dg.Definitions(assets=[alpaca_assets], jobs=[asset_sync_job])
