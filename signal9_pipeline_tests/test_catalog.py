"""The Dagster catalog is complete and true: descriptions, owners, lineage, and table schemas that match the tables."""

from datetime import timedelta

import dagster as dg

from signal9_pipeline.catalog import ASSETS_TABLE_COLUMNS, MARKET_DATA_TABLE_COLUMNS
from signal9_pipeline.definitions import defs
from signal9_pipeline.market_data.days import last_session
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.settings import Settings
from signal9_pipeline_tests.support import materialize_actions, materialize_bars, put_universe, run_sync, small_universe


def test_every_asset_check_job_schedule_and_sensor_says_what_it_is_and_who_owns_it():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and node.owners, key
    for check in graph.asset_check_keys:
        assert graph.get_check_spec(check).description, check
    for job in defs.resolve_all_job_defs():
        assert job.name.startswith("__") or job.description, job.name
    for definition in [*defs.schedules, *defs.sensors]:
        assert definition.description, definition.name


def test_the_tables_carry_their_names_and_schemas():
    graph = defs.resolve_asset_graph()
    settings = Settings.from_env()
    for asset, columns, table in (("assets_table", ASSETS_TABLE_COLUMNS, settings.assets_table),
                                  ("ohlc_bars", MARKET_DATA_TABLE_COLUMNS, settings.market_data_table),
                                  ("corporate_actions", MARKET_DATA_TABLE_COLUMNS, settings.market_data_table)):
        metadata = graph.get(dg.AssetKey(asset)).metadata
        assert [c.name for c in metadata["dagster/column_schema"].columns] == [name for name, _, _ in columns]
        assert metadata["dagster/table_name"] == table


def test_the_lineage_is_the_data_flow():
    graph = defs.resolve_asset_graph()
    parents = {key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys}
               for key in graph.get_all_asset_keys()}
    assert parents["validated_assets"] == {"alpaca_assets"} and parents["assets_table"] == {"validated_assets"}
    for downstream in ("asset_status_events", "pollenation_events", "ohlc_bars", "corporate_actions"):
        assert parents[downstream] == {"assets_table"}, downstream


def test_the_table_schemas_name_every_attribute_the_pipeline_writes(bars_env, default_universe):
    """Every attribute in the items a sync, a bars backfill and a corporate-actions run write is in the schemas."""
    put_universe(bars_env, small_universe(default_universe, n=40))
    assert run_sync().success
    day = last_session()
    assert materialize_bars("1Day", (day - timedelta(days=60)).isoformat(), day.isoformat()).success
    assert materialize_actions(day - timedelta(days=60), day).success
    dynamodb = DynamoDBResource.from_settings()
    for table, columns in ((dynamodb.assets_table_name(), ASSETS_TABLE_COLUMNS),
                           (dynamodb.market_data_table_name(), MARKET_DATA_TABLE_COLUMNS)):
        written = {name for item in dynamodb.scan(table) for name in item}
        assert written and written <= {name for name, _, _ in columns}, written - {name for name, _, _ in columns}
    series = {i["series"].split("#")[-1]
              for i in dynamodb.scan(dynamodb.market_data_table_name(), projection=["series"])}
    assert {"1Day", "actions"} <= series  # bars and corporate actions both written
