"""Contract (a), the unusual cases of real bars through `ohlc_bars`, replayed over HTTP and materialized by the CLI.

- an impossible bar in a real extended-hours day is held back alone, and a rerun after Alpaca corrects it
  stores exactly the corrected bar;
- a crypto day stored with Alpaca's older US Central daily stamp, fetched again with today's UTC stamp,
  keeps one daily bar (winter and summer recordings: 06:00Z and 05:00Z);
- bars are fetched by the asset's class, not by the spelling of its symbol, from the assets table or, for
  a watchlist symbol the table does not hold yet, from Alpaca's asset list.
"""

from __future__ import annotations

import copy
from datetime import date, datetime

import pandas as pd
import pytest

from signal9_pipeline.market_data import read_bars
from signal9_pipeline.market_data.days import CRYPTO, EQUITY
from signal9_pipeline.market_data.read import read_asset_bars
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline_tests.contract import corpus
from signal9_pipeline_tests.contract.launch import Launcher, list_assets
from signal9_pipeline_tests.contract.replay import PATHS
from signal9_pipeline_tests.contract.test_pipeline_on_recorded_bars import recorded_frame

AAPL_DAY = "sebstefenel_aapl_1min_2024-07-01_alpacapy_df"


@pytest.fixture
def cli(bars_env, replay, tmp_path):
    """Alpaca's market-data host is the replay server, the trading host (asset list) the sandbox; partitions from
    2021."""
    replay.clear()
    return Launcher(tmp_path / "dagster", replay.url, date(2021, 1, 1))


def stored_item(env: dict, series: str, bucket: str) -> dict:
    return DynamoDBResource.from_settings().get_items(env["SIGNAL9_MARKET_DATA_TABLE"],
                                                      [{"series": series, "day": bucket}])[0]


def test_an_impossible_bar_of_a_real_day_is_held_back_alone_and_the_corrected_one_stored_on_rerun(cli, bars_env,
                                                                                                  replay):
    day = corpus.entry(AAPL_DAY).bars_by_symbol()["AAPL"]
    spoiled = copy.deepcopy(day)
    victim = spoiled[400]
    victim["h"] = victim["o"] - 1  # high below open: impossible
    aapl = list_assets(bars_env, {"AAPL": EQUITY})["AAPL"]
    window, day_of = (datetime(2024, 7, 1, 8), datetime(2024, 7, 2)), date(2024, 7, 1)

    replay.load(PATHS["stock_bars"], "1Min", {"AAPL": spoiled})
    first = cli.launch("1Min", day_of, day_of, "AAPL")  # it succeeds: one impossible bar costs a check, not the day
    assert {name: c.passed for name, c in first.checks.items()} == {
        "ohlc_consistent": False, "timestamps_valid": True, "completeness": True, "stored_equals_fetched": True,
        "restatements_within_tolerance": True}
    stamp = pd.Timestamp(victim["t"]).isoformat()
    assert (first.metadata["bars_written"].value, first.metadata["bars_held_back"].value) == (len(day) - 1, 1)
    assert f"AAPL {stamp} h: high below open or close" in first.metadata["held_back"].value
    assert f"AAPL {stamp} h:" in first.observations["2024-07-01|1Min"]["held_back"].value  # the partition's own record
    stored = read_bars("AAPL", "1Min", *window)
    assert len(stored) == len(day) - 1 and pd.Timestamp(victim["t"]) not in set(stored["timestamp"])
    assert ([(h["t"], h["field"]) for h in stored_item(bars_env, f"{aapl}#1Min", "2024-07-01")["held_back"]]
            == [(stamp, "h")])

    replay.load(PATHS["stock_bars"], "1Min", {"AAPL": day})  # Alpaca corrects the bar
    rerun = cli.launch("1Min", day_of, day_of, "AAPL")
    assert rerun.passed() and rerun.metadata["bars_held_back"].value == 0
    assert "held_back" not in rerun.observations["2024-07-01|1Min"]
    pd.testing.assert_frame_equal(read_bars("AAPL", "1Min", *window).astype({"trade_count": "float64"}),
                                  recorded_frame(day), check_like=True)
    assert stored_item(bars_env, f"{aapl}#1Min", "2024-07-01")["held_back"] == []


CENTRAL_STAMPED = ["issue_btcusd_1day_2022-01_csv_converted", "docs_btcusd_1day_2022-09_converted"]  # 06:00Z, 05:00Z


def test_a_crypto_day_stored_with_the_us_central_stamp_keeps_one_bar_when_alpaca_answers_utc_midnight(cli, bars_env,
                                                                                                      replay):
    list_assets(bars_env, {"BTC/USD": CRYPTO})
    recorded = [b for name in CENTRAL_STAMPED for b in corpus.entry(name).bars_by_symbol()["BTC/USD"]]
    assert {b["t"][11:] for b in recorded} == {"06:00:00Z", "05:00:00Z"}  # winter and summer, both sides of DST
    ranges = [(min(days), max(days)) for days in (
        [date.fromisoformat(b["t"][:10]) for b in corpus.entry(n).bars_by_symbol()["BTC/USD"]]
        for n in CENTRAL_STAMPED)]
    year = datetime(2022, 1, 1), datetime(2023, 1, 1)

    def materialize_all():
        for first, last in ranges:
            assert cli.launch("1Day", first, last).passed(), (first, last)

    replay.load(PATHS["crypto_bars"], "1Day", {"BTC/USD": recorded})
    materialize_all()
    central = read_bars("BTC/USD", "1Day", *year)
    assert [t.isoformat() for t in central["timestamp"]] == [pd.Timestamp(b["t"]).isoformat() for b in recorded]

    # Alpaca now stamps the same days at midnight UTC (and its bars of them differ: another window of the day).
    utc = [b | {"t": b["t"][:10] + "T00:00:00Z", "c": b["c"] + 1} for b in recorded]
    replay.load(PATHS["crypto_bars"], "1Day", {"BTC/USD": utc})
    materialize_all()
    now = read_bars("BTC/USD", "1Day", *year)
    assert len(now) == len(recorded)  # one bar per day, never the two stamps side by side
    assert [t.isoformat() for t in now["timestamp"]] == [pd.Timestamp(b["t"]).isoformat() for b in utc]
    assert now["close"].tolist() == [b["c"] for b in utc]


def test_bars_are_fetched_by_asset_class_from_the_table_or_alpacas_asset_list_not_by_spelling(cli, bars_env, replay):
    # A crypto asset the table spells without a slash (Alpaca's older spelling, recorded by its Go SDK's tests) is
    # still asked of the crypto endpoint; BTC/USD, in no table yet, is classed by Alpaca's asset list (the sandbox).
    legacy = corpus.entry("go_bchusd_1min_v1beta1_single_2021-11-11").bars_by_symbol()["BCHUSD"]
    list_assets(bars_env, {"BCHUSD": CRYPTO})
    replay.load(PATHS["crypto_bars"], "1Min", {"BCHUSD": legacy})
    assert cli.launch("1Min", date(2021, 11, 11), date(2021, 11, 11), "BCHUSD").passed()
    assert {(path, q["symbols"]) for path, q in replay.served} == {(PATHS["crypto_bars"], "BCHUSD")}
    stored = read_bars("BCHUSD", "1Min", datetime(2021, 11, 11), datetime(2021, 11, 12))
    assert stored["timestamp"].tolist() == [pd.Timestamp(b["t"]) for b in legacy]

    replay.clear()
    (zero_trade,) = corpus.entry("issue598_btcusd_1min_zero_trade_2024-01-02_converted").bars_by_symbol()["BTC/USD"]
    replay.load(PATHS["crypto_bars"], "1Min", {"BTC/USD": [zero_trade]})
    outcome = cli.launch("1Min", date(2024, 1, 2), date(2024, 1, 2), "BTC/USD")
    assert outcome.passed()
    assert {(path, q["symbols"]) for path, q in replay.served} == {(PATHS["crypto_bars"], "BTC/USD")}
    metadata = outcome.metadata
    assert (metadata["bars_written"].value, metadata["bars_zero_trade"].value) == (1, 1)
    # Filed under the company Alpaca lists under BTC/USD; a read by symbol resolves it once a sync has recorded it.
    btc = AlpacaResource.from_settings().get_asset("BTC/USD")["id"]
    (bar,) = read_asset_bars(btc, "1Min", datetime(2024, 1, 2), datetime(2024, 1, 3)).itertuples()
    assert (bar.volume, bar.trade_count, bar.vwap, bar.open, bar.close) == (0, 0, 0, 44192.0, 44207.2545)
