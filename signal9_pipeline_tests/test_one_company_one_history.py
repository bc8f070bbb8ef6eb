"""One company, one history: the pipeline run day by day through the CLI under a controlled clock (libfaketime).

The sandbox's list goes through the FB/META/METV sequence of alpacahq/alpaca-trade-api-csharp issue 526 and a
reused ticker, each change effective on its New York date: a metaverse ETF renamed META -> METV (2022-01-31),
OldCo delisted under TICK (2022-03-01), NewCo - another company, another id - listed under TICK (2022-04-01),
Facebook renamed FB -> META (2022-06-09). On each such date the 04:00 UTC sync runs, then the sensor's
pollenation runs, then the 1Day bars of the days that ended since the last fetch; at the end the corporate
actions of the whole span, and a re-backfill of every date. Every run is a `dg launch` in a process whose clock
is that date's (faketime). The sandbox is checked for nothing here; it stands in for Alpaca, answering `asof`
as Alpaca documents it (see signal9_devstack/sandbox/history.py and its contract tests).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
from datetime import date, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest

from signal9_pipeline.market_data import read_bars
from signal9_pipeline.market_data.pages import bar_frames
from signal9_pipeline.market_data.read import listed_on, read_asset_bars
from signal9_pipeline.market_data.universe import listed_universe
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.tables.assets import AssetsTable
from signal9_pipeline.tables.market_data import is_bars
from signal9_pipeline_tests.conftest import PROJECT_ROOT, VENV_BIN
from signal9_pipeline_tests.support import EventTap, point_alpaca_at

ETF, FACEBOOK = "1f1a3f4e-6b59-4f63-9d3b-7c2b2f6c5a10", "fc6a5dcd-4a70-4b8d-b64f-d83a6dae9ba4"
OLDCO, NEWCO = "6a1b3c5d-7e9f-4a0b-8c1d-2e3f4a5b6c7d", "9d8c7b6a-5f4e-4d3c-ab2a-190817263544"
BYSTANDER = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
FIRST_SYNC = date(2021, 12, 27)
WINDOW = datetime(2021, 12, 1), datetime(2022, 6, 21)


def asset(template: dict, alpaca_id: str, symbol: str, **fields) -> dict:
    return {**template, "id": alpaca_id, "symbol": symbol, "name": f"{symbol} Inc.", "status": "active",
            "tradable": True, **fields}


def universes(template: dict) -> list[tuple[date, list[dict]]]:
    etf, facebook, oldco = asset(template, ETF, "META"), asset(template, FACEBOOK, "FB"), asset(template, OLDCO, "TICK")
    bystander = asset(template, BYSTANDER, "STAY")
    metv, delisted = {**etf, "symbol": "METV"}, {**oldco, "status": "inactive", "tradable": False}
    newco = asset(template, NEWCO, "TICK")
    return [(FIRST_SYNC, [etf, facebook, oldco, bystander]),
            (date(2022, 1, 31), [metv, facebook, oldco, bystander]),
            (date(2022, 3, 1), [metv, facebook, delisted, bystander]),
            (date(2022, 4, 1), [metv, facebook, delisted, newco, bystander]),
            (date(2022, 6, 9), [metv, {**facebook, "symbol": "META"}, delisted, newco, bystander])]


class Clockwork:
    """`dg launch` in a process of its own whose clock reads a given moment (libfaketime), in one Dagster home."""

    def __init__(self, home, env: dict[str, str]):
        home.mkdir()
        (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
        self.home = home
        # The shared limiter's window is kept in a file: one of this test's own, so only faked clocks write it.
        self.env = {**env, "DAGSTER_HOME": str(home), "VIRTUAL_ENV": str(VENV_BIN.parent),
                    "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                    "SIGNAL9_RATE_LIMITER_URL": f"sqlite:///{home / 'rate-limit.sqlite'}"}

    def launch(self, at: datetime, *argv: str) -> None:
        log = self.home / "launch.log"
        with log.open("w") as out:  # a file, not a pipe: helpers that outlive the launch would hold a pipe open
            process = subprocess.Popen(["faketime", "-f", f"@{at:%Y-%m-%d %H:%M:%S}", str(VENV_BIN / "dg"), "launch",
                                        *argv],
                                       cwd=PROJECT_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
            try:
                process.wait(timeout=600)
            finally:
                try:  # Dagster's compute-log helpers run under the faked clock too: stop what this launch started
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        assert process.returncode == 0, f"dg launch {' '.join(argv)} at {at}:\n{log.read_text()[-4000:]}"

    def sync(self, day: date) -> None:
        # A list of five: one delisting is more than the mass-delisting guard's 5%, accepted as an operator would.
        config = {"ops": {"validated_assets": {"config": {"allow_mass_delisting": True}}}}
        self.launch(datetime.combine(day, datetime.min.time()) + timedelta(hours=4), "--job", "asset_sync_job",
                    "--config-json", json.dumps(config))

    def pollenate(self, day: date) -> int:
        """The sensor's tick after the sync, and the runs it asks for; how many."""
        from signal9_pipeline.pollenation.sensor import new_symbols_sensor

        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            requested = new_symbols_sensor(dg.build_sensor_context(
                instance=instance, resources={"dynamodb": DynamoDBResource.from_settings()}))
        requested = requested if isinstance(requested, list) else []
        for request in requested:
            self.launch(datetime.combine(day, datetime.min.time()) + timedelta(hours=4, minutes=10), "--job",
                        "pollenation_job", "--config-json", json.dumps(request.run_config))
        return len(requested)

    def bars(self, first: date, last: date, at: datetime) -> None:
        self.launch(at, "--assets", "ohlc_bars", "--partition-range", f"{first}|1Day...{last}|1Day")

    def actions(self, first: date, last: date, at: datetime) -> None:
        self.launch(at, "--assets", "corporate_actions", "--partition-range", f"{first}...{last}")


def served(symbol: str, asof: str) -> pd.DataFrame:
    """What Alpaca (the sandbox) answers for `symbol` as of `asof` over the whole window: one company's history."""
    pages = bar_frames(AlpacaResource.from_settings(), [symbol], "1Day", *WINDOW, asset_class="us_equity", asof=asof)
    return pd.concat(pages, ignore_index=True).drop(columns="symbol").reset_index(drop=True)


def same_bars(stored: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert len(stored) == len(expected) > 0
    pd.testing.assert_frame_equal(stored.reset_index(drop=True), expected[stored.columns.tolist()], check_dtype=False)


def stored_buckets(env) -> dict[tuple[str, str], tuple[int, str]]:
    items = DynamoDBResource.from_settings().scan(env["SIGNAL9_MARKET_DATA_TABLE"],
                                                  projection=["series", "day", "bar_count", "checksum"])
    return {(i["series"], i["day"]): (i["bar_count"], i["checksum"]) for i in items if is_bars(i)}


@pytest.mark.slow
def test_renames_and_a_reused_ticker_day_by_day_keep_one_company_per_history(bars_env, sandbox_factory,
                                                                             default_universe, monkeypatch, tmp_path):
    template = next(a for a in default_universe if a["symbol"] == "AAPL")
    days = universes(template)
    server = sandbox_factory(days[0][1], rate_limit_per_minute=100_000)
    point_alpaca_at(server, monkeypatch)
    monkeypatch.setenv("SIGNAL9_BARS_START_DATE", WINDOW[0].date().isoformat())
    monkeypatch.setenv("SIGNAL9_POLLENATION_HISTORY_DAYS", "30")
    tap = EventTap(bars_env["SIGNAL9_EVENT_BUS"], f"identity-{tmp_path.name[-12:]}", ["pollenationNeeded"])
    clock = Clockwork(tmp_path / "dagster", dict(os.environ))
    fetched_until = WINDOW[0].date() - timedelta(days=1)
    for number, (day, universe) in enumerate(days):
        if number:
            server_put(server, universe, day)
        clock.sync(day)
        clock.pollenate(day)
        clock.bars(fetched_until + timedelta(days=1), day - timedelta(days=1),
                   datetime.combine(day, datetime.min.time()) + timedelta(hours=5))
        fetched_until = day - timedelta(days=1)
    last = WINDOW[1].date() - timedelta(days=1)
    clock.bars(fetched_until + timedelta(days=1), last,
               datetime.combine(last + timedelta(days=1), datetime.min.time()) + timedelta(hours=5))
    clock.actions(date(2022, 1, 28), date(2022, 6, 10), datetime(2022, 6, 11, 5, 0))

    # No stored series holds two companies: each is exactly its company's history as Alpaca answers it.
    facebook, etf = served("META", "2022-06-20"), served("METV", "2022-06-20")
    oldco, newco = served("TICK", "2022-02-01"), served("TICK", "2022-06-20")
    for alpaca_id, history in ((FACEBOOK, facebook), (ETF, etf), (OLDCO, oldco), (NEWCO, newco)):
        same_bars(read_asset_bars(alpaca_id, "1Day", *WINDOW), history)
    assert oldco["timestamp"].max() < pd.Timestamp("2022-03-01", tz="UTC") <= pd.Timestamp("2022-04-01", tz="UTC") \
        <= newco["timestamp"].min()  # the two companies under TICK never overlap
    # read_bars(META) is Facebook's whole history, from before its rename too; as of 2022-01-03 META is the ETF.
    same_bars(read_bars("META", "1Day", *WINDOW), facebook)
    assert read_bars("META", "1Day", *WINDOW)["timestamp"].min() < pd.Timestamp("2022-06-09", tz="UTC")
    same_bars(read_bars("META", "1Day", *WINDOW, as_of=date(2022, 1, 3)), etf)
    same_bars(read_bars("METV", "1Day", *WINDOW), etf)
    same_bars(read_bars("TICK", "1Day", *WINDOW, as_of=date(2022, 2, 1)), oldco)
    same_bars(read_bars("TICK", "1Day", *WINDOW), newco)

    # The newcomer was recorded as new and pollenated once; the old company's record is whole under its id.
    announced = collections.Counter(e["detail"]["alpacaId"] for e in tap.drain())
    assert announced[NEWCO] == 1 and announced[OLDCO] == 1 and announced[FACEBOOK] == 2  # listed; renamed (new symbol)
    table = AssetsTable(DynamoDBResource.from_settings())
    companies = {c["alpaca_id"]: c for c in table.companies()}
    assert [h["status"] for h in companies[OLDCO]["status_history"]] == ["active", "inactive"]
    assert [h["status"] for h in companies[NEWCO]["status_history"]] == ["active"]
    assert companies[OLDCO]["symbols"] == [{"symbol": "TICK", "end": "2022-04-01", "source": "sync"}]
    # The name changes dated the renames: the effective dates Alpaca reported, agreeing with the sync's own.
    assert [(s["symbol"], s.get("start"), s.get("end")) for s in companies[FACEBOOK]["symbols"]] == [
        ("FB", None, "2022-06-09"), ("META", "2022-06-09", None)]
    assert companies[FACEBOOK]["symbols"][1]["source"] == "name_change"
    views = {v["symbol"]: v for v in table.views()}
    assert views["TICK"]["alpaca_id"] == NEWCO and [h["alpaca_id"] for h in views["TICK"]["holders"]] == [OLDCO, NEWCO]
    assert (views["META"]["alpaca_id"] == FACEBOOK
            and [h["alpaca_id"] for h in views["META"]["holders"]] == [ETF, FACEBOOK])
    with dg.DagsterInstance.from_config(str(clock.home)) as instance:
        checks = instance.get_latest_materialization_event(dg.AssetKey("corporate_actions"))
        assert checks is not None and checks.asset_materialization.metadata["renames_dated"].value == 2
        records = instance.get_records_for_run(checks.run_id,
                                               of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
        evaluations = {r.event_log_entry.dagster_event.event_specific_data.check_name:
                       r.event_log_entry.dagster_event.event_specific_data.passed for r in records}
        assert evaluations["names_agree_with_renames"] is True

    # Re-backfilling every date afterwards asks each company as of its own dates and changes nothing.
    before = stored_buckets(bars_env)
    clock.bars(WINDOW[0].date(), last, datetime(2022, 6, 25, 5, 0))
    assert stored_buckets(bars_env) == before
    assert {s.split("#")[0] for s, _ in before} == {ETF, FACEBOOK, OLDCO, NEWCO, BYSTANDER}

    # The universe of a date: its companies under the symbols they held that day, as the 1Day partitions take them.
    held = {date(2022, 1, 3): {ETF: "META", FACEBOOK: "FB", OLDCO: "TICK", BYSTANDER: "STAY"},
            date(2022, 5, 2): {ETF: "METV", FACEBOOK: "FB", NEWCO: "TICK", BYSTANDER: "STAY"},
            date(2022, 6, 10): {ETF: "METV", FACEBOOK: "META", NEWCO: "TICK", BYSTANDER: "STAY"}}
    for day, companies_then in held.items():
        assert {x.alpaca_id: x.symbol for x in listed_on(day)} == companies_then, day
        cross_section = read_bars(listed_on(day), "1Day", datetime.combine(day, datetime.min.time()),
                                  datetime.combine(day, datetime.max.time()))
        assert sorted(cross_section["symbol"]) == sorted(companies_then.values()), day
    dynamodb = DynamoDBResource.from_settings()
    for day in [d for d, _ in days[1:]] + [date(2022, 1, 28), date(2022, 6, 8)]:  # change days and the days before
        partition = listed_universe(dynamodb, [day]).by_day[day]
        assert {x.alpaca_id for x in listed_on(day)} == partition, day


def server_put(server, universe: list[dict], day: date) -> None:
    import requests

    requests.put(f"{server.url}/_sandbox/universe", params={"effective": day.isoformat()}, json=universe,
                 timeout=60).raise_for_status()
