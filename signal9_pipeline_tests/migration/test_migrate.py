"""`python -m signal9_pipeline.migrate` on tables the symbol-keyed release wrote, a rename and a reused ticker in them.

`legacy_tables.json` holds both tables as that release (commit 94cb54c) left them (`make_legacy_tables.py` says
how): Facebook renamed FB -> META (two symbol items, one id); OldCo delisted under TICK and NewCo listed under it,
which that release recorded as TICK "listed again" with NewCo's id over OldCo's; bars, an intraday day, a
corporate action and partition manifests filed by symbol. Alpaca's list (served by a sandbox) still has OldCo,
inactive, under TICK.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from signal9_pipeline.market_data import read_bars
from signal9_pipeline.market_data.codec import decode
from signal9_pipeline.market_data.read import read_asset_bars
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.tables.assets import AssetsTable
from signal9_pipeline.tables.market_data import unpack_ids
from signal9_pipeline_tests.conftest import PROJECT_ROOT
from signal9_pipeline_tests.support import point_alpaca_at

LEGACY = json.loads(Path(__file__).with_name("legacy_tables.json").read_text())
FACEBOOK, OLDCO, NEWCO = ("fc6a5dcd-4a70-4b8d-b64f-d83a6dae9ba4", "6a1b3c5d-7e9f-4a0b-8c1d-2e3f4a5b6c7d",
                          "9d8c7b6a-5f4e-4d3c-ab2a-190817263544")


def restored(item: dict) -> dict:
    return {k: base64.b64decode(v["base64"]) if isinstance(v, dict) and set(v) == {"base64"} else v
            for k, v in item.items()}


def migrate_command(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "signal9_pipeline.migrate"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return done.stdout


def legacy_bars() -> dict[str, pd.DataFrame]:
    """symbol#timeframe -> the bars the old release stored under it."""
    items = [restored(i) for i in LEGACY["market_data"] if "bars" in i]
    return {i["series"]: decode(i["bars"])[0] for i in items}


@pytest.fixture
def legacy_tables(bars_env, sandbox_factory, monkeypatch):
    dynamodb = DynamoDBResource.from_settings()
    dynamodb.put_items(bars_env["SIGNAL9_ASSETS_TABLE"], [restored(i) for i in LEGACY["assets"]])
    dynamodb.put_items(bars_env["SIGNAL9_MARKET_DATA_TABLE"], [restored(i) for i in LEGACY["market_data"]])
    point_alpaca_at(sandbox_factory(LEGACY["alpaca_assets"]), monkeypatch)
    return dict(os.environ)


def test_the_migration_gives_each_company_one_history_and_loses_no_bar(legacy_tables):
    report = migrate_command(legacy_tables)
    assert "reused tickers split: 1 TICK" in report and "left in place" not in report, report
    table = AssetsTable(DynamoDBResource.from_settings())
    companies = {c["alpaca_id"]: c for c in table.companies()}
    views = {v["symbol"]: v for v in table.views()}
    assert len(companies) == 10 and set(views) == {i["symbol"] for i in LEGACY["assets"]}  # a company more than items
    # The rename: one company, its symbol history split where the sync recorded it.
    renamed_on = next(h["at"] for h in views["META"]["status_history"] if h["status"] == "active")[:10]
    assert [(s["symbol"], s.get("start"), s.get("end")) for s in companies[FACEBOOK]["symbols"]] == [
        ("FB", None, renamed_on), ("META", renamed_on, None)]
    assert (views["FB"]["status"] == "inactive" and views["FB"]["renamed_to"] == "META"
            and views["META"]["alpaca_id"] == FACEBOOK)
    # The reused ticker: OldCo has its id and history back; NewCo starts at its listing, to be pollenated.
    oldco, newco = companies[OLDCO], companies[NEWCO]
    assert [h["status"] for h in oldco["status_history"]] == ["active", "inactive"] and oldco["status"] == "inactive"
    assert oldco["name"] == "OldCo Inc." and newco["name"] == "NewCo Corp."
    assert [h["note"] for h in newco["status_history"]] == ["listed"] and newco["pollenation_status"] == "pending"
    assert oldco["symbols"][0]["end"] == newco["symbols"][0]["start"]
    assert views["TICK"]["alpaca_id"] == NEWCO and [h["alpaca_id"] for h in views["TICK"]["holders"]] == [OLDCO, NEWCO]

    # Every bar moved to its company's series; none lost, none left under a symbol.
    stored = list(DynamoDBResource.from_settings().scan(legacy_tables["SIGNAL9_MARKET_DATA_TABLE"]))
    series = {i["series"] for i in stored}
    assert not {s for s in series if not s.startswith("#") and s.split("#")[0] not in companies}
    before = legacy_bars()
    window = datetime(2024, 6, 1), datetime(2024, 6, 15)
    facebook = read_bars("META", "1Day", *window)
    assert len(facebook) == len(before["FB#1Day"]) + len(before["META#1Day"]) == 10  # FB's days and META's, one series
    expected = pd.concat([before["FB#1Day"], before["META#1Day"]]).sort_values("timestamp").reset_index(drop=True)
    pd.testing.assert_frame_equal(facebook, expected[facebook.columns.tolist()], check_dtype=False)
    pd.testing.assert_frame_equal(read_asset_bars(OLDCO, "1Day", *window).reset_index(drop=True),
                                  before["TICK#1Day"][facebook.columns.tolist()],
                                  check_dtype=False)  # bars of 2024: OldCo's
    assert read_asset_bars(NEWCO, "1Day", *window).empty
    assert len(read_bars("FB", "1Min", datetime(2024, 6, 5), datetime(2024, 6, 6))) == len(before["FB#1Min"])
    moved = sum(i.get("bar_count", 0) for i in stored if "bars" in i)
    assert moved == sum(len(f) for f in before.values())
    actions = [i for i in stored if i["series"].endswith("#actions")]
    legacy_action = next(i for i in LEGACY["market_data"] if i["series"].endswith("#actions"))
    assert (len(actions) == 1 and actions[0]["day"] == legacy_action["day"]
            and actions[0]["fields"] == legacy_action["fields"])
    manifest = next(i for i in stored if (i["series"], i["day"]) == ("#PARTITION#1Day", "2024-06-10"))
    assert unpack_ids(manifest["asset_ids"]) == {FACEBOOK, OLDCO} | {c for c, i in companies.items()
                                                                      if i["symbol"] not in ("META", "TICK")}

    # A second run finds nothing left to move and changes nothing.
    again = migrate_command(legacy_tables)
    assert "companies written: 0" in again and "bar buckets moved: 0" in again and "symbol items written: 0" in again
    assert sorted(DynamoDBResource.from_settings().scan(legacy_tables["SIGNAL9_MARKET_DATA_TABLE"]),
                  key=lambda i: (i["series"], i["day"])) == sorted(stored, key=lambda i: (i["series"], i["day"]))
