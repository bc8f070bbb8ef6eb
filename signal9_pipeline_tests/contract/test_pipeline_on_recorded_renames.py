"""Contract (a) for renames: Alpaca's recorded META pages (asof 2022-06-09) through `ohlc_bars`, by the CLI.

The pages, recorded by alpaca-trade-api-go's tests, answer META with Facebook's bars, the one of 2022-06-08 (when
Facebook still traded as FB) included. The assets table knows Facebook as the sync records it: FB, then META
from 2022-06-09. The run must ask for META as of its last date, file every bar under Facebook's id whatever
symbol it came under, and a read of FB as of a date before the rename must give the same company's bars.
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest

from signal9_pipeline.market_data import read_bars
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.tables.assets import AssetsTable
from signal9_pipeline_tests.contract import corpus
from signal9_pipeline_tests.contract.launch import Launcher
from signal9_pipeline_tests.contract.replay import PATHS
from signal9_pipeline_tests.contract.test_pipeline_on_recorded_bars import recorded_frame
from signal9_pipeline_tests.support import company_row, sync_rows

FACEBOOK_ID = "fc6a5dcd-4a70-4b8d-b64f-d83a6dae9ba4"  # "FB" in 2021 asset responses, "META" in 2025 ones


@pytest.fixture
def cli(bars_env, replay, tmp_path):
    replay.clear()
    return Launcher(tmp_path / "dagster", replay.url, date(2022, 1, 3))


def test_the_recorded_meta_pages_are_filed_under_one_company_whatever_symbol_it_traded_under(cli, bars_env, replay):
    sync_rows([company_row("FB", alpaca_id=FACEBOOK_ID)], "2022-06-01T04:00:00Z", "2022-06-01")
    sync_rows([company_row("META", alpaca_id=FACEBOOK_ID)], "2022-06-09T04:00:00Z", "2022-06-09", "2022-06-08")
    recorded = [b for n in (1, 2) for b in corpus.entry(f"go_meta_1day_asof_single_page{n}").bars_by_symbol()["META"]]
    replay.load(PATHS["stock_bars"], "1Day", {"META": recorded})

    outcome = cli.launch("1Day", date(2022, 6, 8), date(2022, 6, 13))
    assert outcome.passed() and outcome.metadata["bars_written"].value == len(recorded)
    asked = {(q["symbols"], q.get("asof")) for path, q in replay.served if path == PATHS["stock_bars"]}
    assert asked == {("META", "2022-06-13")}  # the symbol as of the run's last date, and that date sent as asof
    series = {i["series"] for i in DynamoDBResource.from_settings().scan(bars_env["SIGNAL9_MARKET_DATA_TABLE"])
              if not i["series"].startswith("#PARTITION")}
    assert series == {f"{FACEBOOK_ID}#1Day"}  # one company, one series
    window = datetime(2022, 6, 1), datetime(2022, 6, 14)
    today = read_bars("META", "1Day", *window)
    pd.testing.assert_frame_equal(today.astype({"trade_count": "float64"}), recorded_frame(recorded), check_like=True)
    assert today["timestamp"].iloc[0] == pd.Timestamp("2022-06-08T04:00:00Z")  # Facebook's last day as FB
    pd.testing.assert_frame_equal(read_bars("FB", "1Day", *window, as_of=date(2022, 6, 8)), today)
    view = AssetsTable(DynamoDBResource.from_settings()).get_views(["FB"])[0]
    assert (view["status"], view["renamed_to"], view["holders"]) == (
        "inactive", "META", [{"alpaca_id": FACEBOOK_ID, "end": "2022-06-09"}])
