"""The pipeline's one code location: each domain's definitions plus the shared resources."""

import dagster as dg

from signal9_pipeline.assets_sync import assets as assets_sync
from signal9_pipeline.resources.alpaca import AlpacaResource

defs = dg.Definitions.merge(
    assets_sync.defs,
    dg.Definitions(resources={"alpaca": AlpacaResource()}),
)
