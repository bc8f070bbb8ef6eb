"""Contract: the pipeline's corporate-action parser and adjustment on Alpaca's recorded responses.

Every recorded `/v1/corporate-actions` body is parsed by `corporate_actions.actions.parse_page`:
nothing real is held back or mistyped, ratios and amounts are what Alpaca sent. The recorded
TPG dividend with its raw and adjusted bars shows the standard method against Alpaca's own
adjusted bars, and that the difference is one the `agrees_with_alpaca_adjusted` check reports.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from signal9_pipeline.corporate_actions.actions import KNOWN_GROUPS, parse_page
from signal9_pipeline.corporate_actions.store import HALF_CENT
from signal9_pipeline.market_data.pages import bars_page_frame
from signal9_pipeline.market_data.read import adjusted
from signal9_pipeline_tests.contract import corpus

RECORDINGS = corpus.of_kind(corpus.ACTIONS_KIND)


@pytest.mark.parametrize("entry", RECORDINGS, ids=lambda e: e.name)
def test_every_recorded_action_parses_as_alpaca_sent_it(entry):
    actions = parse_page(entry.body)
    sent = corpus.actions_by_type(entry)
    assert len(actions) == sum(map(len, sent.values())) > 0
    assert {group for group in sent} <= set(KNOWN_GROUPS)
    for action in actions:
        assert action.known and action.held_back is None, action.describe()
        assert action.symbols and action.process_date is not None
        fields = action.fields
        if action.type in ("forward_split", "reverse_split"):
            assert action.ratio == pytest.approx(fields["new_rate"] / fields["old_rate"])
            assert (action.ratio > 1) == (action.type == "forward_split")
            assert action.ex_date == date.fromisoformat(fields["ex_date"])
        if action.type == "cash_dividend":
            assert action.cash == fields["rate"] and action.ex_date == date.fromisoformat(fields["ex_date"])


def test_the_recorded_reverse_split_is_one_for_ten():
    (lsb,) = parse_page(corpus.entry("forum_lsb_reverse_split_2024-10-04").body)
    assert lsb.type == "reverse_split" and lsb.ratio == pytest.approx(0.1) and lsb.symbols == ("LSB",)


def test_the_standard_dividend_method_on_recorded_tpg_bars_and_where_alpaca_differs():
    (tpg,) = parse_page(corpus.entry("forum_tpg_cash_dividend_2026-02-19").body)
    raw, _ = bars_page_frame(corpus.entry("forum_tpg_1day_raw_2026-02-17").body, "/v2/stocks/bars")
    alpaca, _ = bars_page_frame(corpus.entry("forum_tpg_1day_adjusted_2026-02-17").body, "/v2/stocks/bars")
    raw, alpaca = raw.drop(columns="symbol"), alpaca.drop(columns="symbol")
    close_before = float(raw.loc[raw["timestamp"] == pd.Timestamp("2026-02-18T05:00:00Z"), "close"].iloc[0])
    assert close_before == 47.94
    ours = adjusted(raw, [(tpg, close_before)], "dividend")
    factor = 1 - 0.61 / 47.94
    ex = raw["timestamp"] >= pd.Timestamp("2026-02-19T05:00:00Z")
    for column in ("open", "high", "low", "close", "vwap"):
        assert ours.loc[~ex, column].tolist() == pytest.approx((raw.loc[~ex, column] * factor).tolist(), abs=1e-9)
        assert ours.loc[ex, column].tolist() == raw.loc[ex, column].tolist() == alpaca.loc[ex, column].tolist()
    assert ours["volume"].tolist() == raw["volume"].tolist() == alpaca["volume"].tolist()
    # Alpaca's own factor (47.29 / 47.94 = 0.98644) is not the standard 0.98728: 4 cents on the close, which the
    # agreement check reports instead of copying.
    gap = abs(ours["close"].iloc[1] - alpaca["close"].iloc[1])
    assert round(ours["close"].iloc[1], 2) == 47.33 and alpaca["close"].iloc[1] == 47.29 and gap > HALF_CENT


def test_recorded_and_hostile_actions_through_the_asset(bars_env, replay, default_universe, monkeypatch):
    """Real TPG and LSB actions, a split with a zero ratio and a type the pipeline does not know, replayed over
    HTTP into `corporate_actions`: the recorded dividend gets its recorded reference close and the check reports
    Alpaca's recorded adjusted close as a disagreement; the bad split is held back and reads across it refused."""
    import copy
    import uuid
    from datetime import datetime

    from signal9_pipeline.corporate_actions.actions import AdjustmentError
    from signal9_pipeline.market_data import read_bars
    from signal9_pipeline.resources import alpaca_gateway
    from signal9_pipeline_tests.support import (
        check_results,
        materialize_actions,
        materialize_bars,
        put_universe,
        run_sync,
        small_universe,
    )

    universe = small_universe(default_universe, n=6)[:6]
    named = [copy.deepcopy(universe[0]) | {"symbol": symbol, "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol))}
             for symbol in ("TPG", "LSB")]
    put_universe(bars_env, universe + named)
    assert run_sync().success
    other = universe[1]["symbol"]
    assert materialize_bars("1Day", "2026-02-17", "2026-02-20").success  # the sandbox's bars for every symbol

    monkeypatch.setenv("ALPACA_DATA_URL", replay.url)  # from here, Alpaca's recorded answers
    alpaca_gateway.reset()
    replay.clear()
    for name, adjustment in (("forum_tpg_1day_raw_2026-02-17", "raw"), ("forum_tpg_1day_adjusted_2026-02-17", "all")):
        replay.load("/v2/stocks/bars", "1Day", corpus.entry(name).body["bars"], adjustment)
    assert materialize_bars("1Day", "2026-02-17", "2026-02-20").success  # TPG's stored bars are now the recorded ones
    lsb = corpus.entry("forum_lsb_reverse_split_2024-10-04").body["corporate_actions"]["reverse_splits"][0]
    hostile = {"reverse_splits": [lsb | {"id": "bad-ratio", "symbol": other, "old_rate": 0,
                                         "ex_date": "2026-02-19", "process_date": "2026-02-19"}],
               "tender_offers": [{"id": "unknown-type", "symbol": other, "process_date": "2026-02-19", "rate": 12.5}]}
    replay.load_actions([corpus.entry("forum_tpg_cash_dividend_2026-02-19").body,
                         corpus.entry("forum_lsb_reverse_split_2024-10-04").body, {"corporate_actions": hostile}])
    result = materialize_actions(date(2026, 2, 17), date(2026, 3, 5))
    assert result.success
    checks = check_results(result)
    assert checks["ratios_valid"] is False and checks["dates_valid"] is True
    assert checks["agrees_with_alpaca_adjusted"] is False  # Alpaca's recorded factor is not the standard one
    evaluations = {e.event_specific_data.check_name: e.event_specific_data for e in result.all_events
                   if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert "bad-ratio" in evaluations["ratios_valid"].description
    assert ("TPG 2026-02-18: Alpaca's all-adjusted close 47.2900, ours 47.3300"
            in evaluations["agrees_with_alpaca_adjusted"].description)
    metadata = result.asset_materializations_for_node("corporate_actions")[0].metadata
    assert (metadata["cash_dividends"].value, metadata["reverse_splits"].value) == (1, 2)
    assert (metadata["unknown_types"].value, metadata["held_back"].value) == (1, 1)
    assert metadata["dividends_without_reference_close"].value == 0

    window = datetime(2026, 2, 17), datetime(2026, 2, 21)
    tpg = read_bars("TPG", "1Day", *window, adjustment="dividend")
    assert [round(c, 2) for c in tpg["close"]] == [round(46.90 * (1 - 0.61 / 47.94), 2), 47.33, 44.58, 44.51]
    assert read_bars("TPG", "1Day", *window)["close"].tolist() == [46.90, 47.94, 44.58, 44.51]  # raw stays raw
    with pytest.raises(AdjustmentError, match="bad-ratio.*held back"):
        read_bars(other, "1Day", *window, adjustment="split")
    assert len(read_bars(other, "1Day", *window, adjustment="dividend")) == 4  # the bad split is not a dividend
    assert len(read_bars(other, "1Day", datetime(2026, 2, 19), datetime(2026, 2, 21), adjustment="all")) == 2
