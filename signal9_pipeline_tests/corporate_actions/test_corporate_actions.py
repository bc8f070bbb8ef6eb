"""corporate_actions end to end: sandbox over HTTP -> dynalite -> read_bars(adjustment=...), checked by hand."""

import collections
from datetime import date, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest
import requests

from signal9_pipeline.corporate_actions.actions import parse_page
from signal9_pipeline.corporate_actions.store import LOOKAHEAD
from signal9_pipeline.market_data import read_bars
from signal9_pipeline.market_data.assemble import COLUMNS
from signal9_pipeline.market_data.days import fetch_window, last_ended_day, previous_session
from signal9_pipeline.market_data.pages import bar_frames
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.tables.assets import AssetsTable
from signal9_pipeline_tests.support import (
    EventTap,
    check_results,
    materialize_actions,
    materialize_bars,
    point_alpaca_at,
    put_universe,
    run_sync,
    small_universe,
)

PRICES = ["open", "high", "low", "close", "vwap"]


def served_actions(first: date, last: date) -> list:
    return [a for page in AlpacaResource.from_settings().iter_corporate_actions(first, last) for a in parse_page(page)]


def sip_close(symbol: str, day: date) -> float:
    pages = list(bar_frames(AlpacaResource.from_settings(), [symbol], "1Day", *fetch_window(day, day, crypto=False),
                            asset_class="us_equity", feed="sip"))
    return float(pd.concat(pages)["close"].iloc[0])


def by_hand(raw: pd.DataFrame, ex: date, price_factor: float, volume_factor: float = 1.0) -> pd.DataFrame:
    """The documented method, bar by bar: bars of New York days before the ex-date get the factors."""
    out = raw.copy()
    out["volume"] = out["volume"].astype("float64")
    for i, stamp in enumerate(raw["timestamp"]):
        if stamp.tz_convert("America/New_York").date() < ex:
            for column in PRICES:
                out.loc[i, column] = raw.loc[i, column] * price_factor
            out.loc[i, "volume"] = raw.loc[i, "volume"] * volume_factor
    return out


def assert_to_the_cent(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert got["timestamp"].tolist() == expected["timestamp"].tolist()
    for column in PRICES:
        assert (got[column] - expected[column]).abs().max() < 0.005, column
    assert (got["volume"] - expected["volume"]).abs().max() < 1e-6
    assert got["trade_count"].tolist() == expected["trade_count"].tolist()


@pytest.fixture
def stored(bars_env, default_universe):
    """A synced universe with 1Day bars over the last 90 days, and the sandbox's actions of that span found."""
    universe = small_universe(default_universe, n=40)
    put_universe(bars_env, universe)
    assert run_sync().success
    last = last_ended_day()
    first = last - timedelta(days=90)
    actions = served_actions(first, last + LOOKAHEAD)  # what the asset asks for: dividends are processed when paid
    per_symbol = collections.Counter(s for a in actions for s in a.symbols)
    found = {}
    for action in actions:  # the sandbox's guaranteed actions: their symbols have no other action
        if per_symbol[action.symbols[0]] != 1 or not first < action.ex_date <= last:
            continue
        if action.type == "forward_split" and action.ratio == 4:
            found.setdefault("split", action)
        elif action.type == "reverse_split" and action.ratio == pytest.approx(0.1):
            found.setdefault("reverse", action)
        elif action.type == "cash_dividend":
            found.setdefault("dividend", action)
    assert set(found) == {"split", "reverse", "dividend"}, [a.describe() for a in actions]
    result = materialize_bars("1Day", first.isoformat(), last.isoformat())
    assert result.success
    return bars_env, first, last, found, [a["symbol"] for a in universe
                                          if a["class"] == "us_equity" and a["status"] == "active"]


def test_adjusted_reads_follow_the_documented_method_to_the_cent_and_raw_stays_raw(stored):
    env, first, last, found, listed = stored
    start, end = (datetime.combine(first, datetime.min.time()),
                  datetime.combine(last + timedelta(days=1), datetime.min.time()))
    raw = {k: read_bars(a.symbols[0], "1Day", start, end) for k, a in found.items()}
    split = found["split"]
    before = raw["split"][raw["split"]["timestamp"].dt.tz_convert("America/New_York").dt.date < split.ex_date]
    after = raw["split"][raw["split"]["timestamp"].dt.tz_convert("America/New_York").dt.date >= split.ex_date]
    assert len(before) and len(after) and before["close"].iloc[-1] > 2.5 * after["close"].iloc[0]  # the raw cliff
    # Nothing recorded yet: an adjusted read is the raw read.
    assert_to_the_cent(read_bars(split.symbols[0], "1Day", start, end, adjustment="all"),
                       by_hand(raw["split"], split.ex_date, 1.0))

    tap = EventTap(env["SIGNAL9_EVENT_BUS"], "corporate-actions", ["corporateActionRecorded"])
    result = materialize_actions(first, last)
    assert result.success, result.all_events
    checks = check_results(result)
    assert checks == {"ratios_valid": True, "dates_valid": True, "no_duplicate_actions": True,
                      "names_agree_with_renames": True, "agrees_with_alpaca_adjusted": True}
    agreement = next(e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
                     and e.event_specific_data.check_name == "agrees_with_alpaca_adjusted")
    assert agreement.metadata["compared"].value >= 3  # the sandbox's adjusted closes follow the same method
    metadata = result.asset_materializations_for_node("corporate_actions")[0].metadata
    assert metadata["forward_splits"].value >= 1 and metadata["reverse_splits"].value >= 1
    assert metadata["cash_dividends"].value >= 1 and metadata["new"].value >= 3

    # Recorded after the bars were stored: adjusted reads change at once, nothing re-ingested.
    assert_to_the_cent(read_bars(split.symbols[0], "1Day", start, end, adjustment="split"),
                       by_hand(raw["split"], split.ex_date, 1 / 4, 4))
    reverse = found["reverse"]
    assert_to_the_cent(read_bars(reverse.symbols[0], "1Day", start, end, adjustment="split"),
                       by_hand(raw["reverse"], reverse.ex_date, 10, 1 / 10))
    dividend = found["dividend"]
    factor = 1 - dividend.cash / sip_close(dividend.symbols[0], previous_session(dividend.ex_date))
    assert_to_the_cent(read_bars(dividend.symbols[0], "1Day", start, end, adjustment="dividend"),
                       by_hand(raw["dividend"], dividend.ex_date, factor))
    for key, action in found.items():  # raw stays raw
        pd.testing.assert_frame_equal(read_bars(action.symbols[0], "1Day", start, end), raw[key])

    announced = {e["detail"]["actionId"]: e["detail"] for e in tap.drain()}
    assert split.id in announced and reverse.id in announced and dividend.id not in announced
    assert announced[split.id]["ratio"] == 4 and announced[split.id]["symbols"] == list(split.symbols)

    # A many-symbol read fetches every company's actions in bulk and equals the one-symbol reads, adjustment by
    # adjustment.
    symbols = list(dict.fromkeys([a.symbols[0] for a in found.values()] + listed[:12]))
    for adjustment in ("raw", "split", "dividend", "all"):
        one = pd.concat([read_bars(s, "1Day", start, end, adjustment=adjustment).assign(symbol=s) for s in symbols],
                        ignore_index=True)[["symbol", *COLUMNS]]
        pd.testing.assert_frame_equal(read_bars(symbols, "1Day", start, end, adjustment=adjustment), one,
                                      obj=adjustment)

    again = materialize_actions(first, last)  # idempotent: nothing new, nothing announced twice
    again_metadata = again.asset_materializations_for_node("corporate_actions")[0].metadata
    assert again.success and again_metadata["new"].value == 0 and again_metadata["changed"].value == 0
    assert again_metadata["unchanged"].value == metadata["new"].value + metadata["unchanged"].value
    assert tap.drain() == []


def check_description(result, name: str = "names_agree_with_renames") -> str | None:
    return next(e.event_specific_data.description for e in result.all_events
                if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.check_name == name)


def test_name_changes_agree_with_the_renames_the_sync_records_and_are_announced(bars_env, default_universe):
    import random

    from signal9_devstack.sandbox.churn import churn

    base = small_universe(default_universe, n=40)
    put_universe(bars_env, base)
    assert run_sync().success
    day = churn(base, random.Random(11), renames=2)
    (old, new), (other_old, other_new) = sorted(day.renamed.items())
    tap = EventTap(bars_env["SIGNAL9_EVENT_BUS"], "corporate-action-renames", ["corporateActionRecorded"])
    put_universe(bars_env, day.universe)
    assert run_sync().success  # the sync records both renames
    yesterday = last_ended_day()
    result = materialize_actions(yesterday, yesterday)  # the name changes are processed today: within the lookahead
    assert result.success and check_results(result)["names_agree_with_renames"] is True, check_description(result)
    announced = {(e["detail"]["oldSymbol"], e["detail"]["newSymbol"]) for e in tap.drain()
                 if e["detail"]["type"] == "name_change"}
    assert announced == {(old, new), (other_old, other_new)}

    # A rename Alpaca reports before the asset sync has seen it (no sync since) is recorded, dated by the action;
    # the sync then finds the company's symbol history already right.
    later = churn(day.universe, random.Random(12), renames=1)
    put_universe(bars_env, later.universe)
    ((stale_old, stale_new),) = later.renamed.items()
    result = materialize_actions(yesterday, yesterday)
    assert result.success and check_results(result)["names_agree_with_renames"] is True
    company = next(c for c in AssetsTable(DynamoDBResource.from_settings()).companies() if c["symbol"] == stale_old)
    assert ([s["symbol"] for s in company["symbols"]] == [stale_old, stale_new]
            and company["symbols"][1]["source"] == "name_change")
    assert run_sync().success
    again = next(c for c in AssetsTable(DynamoDBResource.from_settings()).companies()
                 if c["alpaca_id"] == company["alpaca_id"])
    assert again["symbol"] == stale_new and again["symbols"] == company["symbols"]


def test_a_name_change_dated_outside_the_syncs_window_is_a_warning_naming_both_dates(bars_env, sandbox_factory,
                                                                                    default_universe, monkeypatch):
    """Alpaca dates a rename 2026-11-20, but the sync that saw it came after a sync that had not: they disagree."""
    base = small_universe(default_universe, n=12)
    server = sandbox_factory(base)
    point_alpaca_at(server, monkeypatch)
    assert run_sync().success
    renamed = next(a for a in base if a["class"] == "us_equity" and a["status"] == "active" and a["tradable"])
    moved = [{**a, "symbol": "NEWSYM"} if a is renamed else a for a in base]
    requests.put(f"{server.url}/_sandbox/universe", params={"effective": "2026-11-20"}, json=moved,
                 timeout=30).raise_for_status()
    assert run_sync().success  # it sees the rename only now
    result = materialize_actions(date(2026, 11, 20), date(2026, 11, 20))
    evaluation = next(e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
                      and e.event_specific_data.check_name == "names_agree_with_renames")
    assert result.success and evaluation.passed is False and evaluation.severity == dg.AssetCheckSeverity.WARN
    seen = next(c for c in AssetsTable(DynamoDBResource.from_settings()).companies() if c["alpaca_id"] == renamed["id"])
    assert f"{renamed['symbol']} -> NEWSYM effective 2026-11-20" in evaluation.description
    # the action's date stands
    assert "2026-11-20" in evaluation.description and seen["symbols"][1]["start"] == "2026-11-20"
    assert f"between the syncs of {seen['symbols'][1]['seen_after']} (not yet) and " in evaluation.description
