"""Parsing, validation and price factors of corporate actions (pure logic, no servers)."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from signal9_pipeline.corporate_actions.actions import (
    AdjustmentError,
    CorporateActionsResponseError,
    duplicates,
    factors,
    from_item,
    parse_action,
    parse_page,
    to_item,
)
from signal9_pipeline.market_data.read import adjusted

TODAY = date(2026, 12, 1)


def split(new, old, ex="2026-10-05", symbol="AAA", id_="s1", group="forward_splits"):
    return parse_action(group, {"id": id_, "symbol": symbol, "cusip": "C", "new_rate": new, "old_rate": old,
                                "process_date": ex, "ex_date": ex, "record_date": ex, "payable_date": ex})


def dividend(rate, ex="2026-10-20", symbol="AAA", id_="d1", payable="2026-11-05"):
    return parse_action("cash_dividends", {"id": id_, "symbol": symbol, "cusip": "C", "rate": rate, "special": False,
                                           "foreign": False, "process_date": payable, "ex_date": ex,
                                           "record_date": ex, "payable_date": payable})


def days(*names):
    return np.array(names, dtype="datetime64[D]")


def test_a_split_divides_earlier_prices_and_multiplies_earlier_volumes_by_its_ratio():
    got = factors(days("2026-10-02", "2026-10-05", "2026-10-06"), [(split(4, 1), None)], "split", today=TODAY)
    assert got.price.tolist() == [0.25, 1.0, 1.0]  # the ex-date itself already trades split
    assert got.volume.tolist() == [4.0, 1.0, 1.0]


def test_a_reverse_split_multiplies_earlier_prices():
    reverse = split(1, 10, group="reverse_splits")
    assert reverse.type == "reverse_split" and reverse.ratio == pytest.approx(0.1)
    got = factors(days("2026-10-02"), [(reverse, None)], "all", today=TODAY)
    assert got.price[0] == pytest.approx(10.0) and got.volume[0] == pytest.approx(0.1)


def test_a_cash_dividend_uses_the_close_before_its_ex_date_and_leaves_volume():
    got = factors(days("2026-10-19", "2026-10-20"), [(dividend(0.5), 100.0)], "dividend", today=TODAY)
    assert got.price.tolist() == [pytest.approx(0.995), 1.0]
    assert got.volume.tolist() == [1.0, 1.0]


def test_factors_of_several_actions_multiply_and_each_adjustment_takes_its_own():
    actions = [(split(2, 1, ex="2026-10-05"), None), (dividend(1.0, ex="2026-10-20"), 50.0)]
    bar_days = days("2026-10-01", "2026-10-10", "2026-10-25")
    assert factors(bar_days, actions, "all", today=TODAY).price.tolist() == pytest.approx([0.5 * 0.98, 0.98, 1.0])
    assert factors(bar_days, actions, "split", today=TODAY).price.tolist() == pytest.approx([0.5, 1.0, 1.0])
    assert factors(bar_days, actions, "dividend", today=TODAY).price.tolist() == pytest.approx([0.98, 0.98, 1.0])
    assert factors(bar_days, actions, "raw", today=TODAY).price.tolist() == [1.0, 1.0, 1.0]


def test_an_action_not_yet_in_effect_changes_nothing():
    got = factors(days("2026-10-01"), [(split(4, 1, ex="2026-12-10"), None)], "split", today=TODAY)
    assert got.price.tolist() == [1.0]


@pytest.mark.parametrize("new, old", [(0, 1), (-4, 1), (4, 0), (float("inf"), 1), (float("nan"), 1), ("4", 1),
                                      (True, 1)])
def test_an_impossible_ratio_is_held_back_and_an_adjusted_read_across_it_is_refused(new, old):
    bad = split(new, old)
    assert bad.held_back and any(what == "ratio" for what, _ in bad.problems)
    with pytest.raises(AdjustmentError, match="held back.*adjustment='raw'"):
        factors(days("2026-10-01"), [(bad, None)], "split", today=TODAY)
    # a read that does not cross it (every bar on or after its ex-date), or that does not adjust splits, is unaffected
    assert factors(days("2026-10-06"), [(bad, None)], "split", today=TODAY).price.tolist() == [1.0]
    assert factors(days("2026-10-01"), [(bad, None)], "dividend", today=TODAY).price.tolist() == [1.0]


@pytest.mark.parametrize("fields, reason", [
    ({"ex_date": "2026-02-30"}, "impossible date ex_date"),
    ({"ex_date": "1066-10-14"}, "impossible date ex_date"),
    ({"ex_date": 20261020}, "impossible date ex_date"),
    ({"payable_date": "2026-10-01"}, "ex_date 2026-10-20 is after payable_date"),
])
def test_an_impossible_or_disordered_date_is_held_back_with_its_reason(fields, reason):
    base = {"id": "d", "symbol": "AAA", "cusip": "C", "rate": 0.5, "special": False, "foreign": False,
            "process_date": "2026-11-05", "ex_date": "2026-10-20", "record_date": "2026-10-20",
            "payable_date": "2026-11-05"}
    action = parse_action("cash_dividends", {**base, **fields})
    assert reason in action.held_back and any(what == "date" for what, _ in action.problems)


def test_an_unknown_type_is_kept_raw_and_never_applied():
    odd = parse_action("tender_offers", {"id": "t1", "symbol": "AAA", "rate": 0, "process_date": "2026-10-01"})
    assert not odd.known and odd.held_back is None and odd.type == "tender_offer"
    assert factors(days("2026-09-01"), [(odd, None)], "all", today=TODAY).price.tolist() == [1.0]
    again, _ = from_item(to_item(odd, "id-AAA", "AAA"))
    assert again == odd


def test_stored_items_round_trip_with_their_reference_close_and_held_back_reason():
    action = dividend(0.37)
    again, close = from_item(to_item(action, "id-AAA", "AAA", 123.45))
    assert again == action and close == 123.45
    bad, _ = from_item(to_item(split(0, 1), "id-AAA", "AAA"))
    assert bad.held_back


def test_one_event_under_two_ids_is_reported_and_applied_once():
    first, repeat = dividend(0.5, id_="a"), dividend(0.5, id_="b")
    assert duplicates([first, repeat]) == {"b": "a"}
    got = factors(days("2026-10-19"), [(first, 100.0), (repeat, 100.0)], "dividend", today=TODAY)
    assert got.price[0] == pytest.approx(0.995)
    special = dividend(2.0, id_="c")  # a special dividend on the same ex-date is another event
    assert duplicates([first, special]) == {}


def test_a_dividend_without_its_reference_close_is_refused_not_guessed():
    with pytest.raises(AdjustmentError, match="no reference close"):
        factors(days("2026-10-19"), [(dividend(0.5), None)], "dividend", today=TODAY)


def test_pages_that_are_not_alpacas_shape_are_typed_errors():
    assert parse_page({"corporate_actions": {}, "next_page_token": None}) == []
    for page in ([], {"corporate_actions": []}, {"corporate_actions": {"forward_splits": {}}},
                 {"corporate_actions": {"forward_splits": [1]}}):
        with pytest.raises(CorporateActionsResponseError):
            parse_page(page)


def test_adjusting_a_frame_uses_each_bars_new_york_trading_day():
    # post-market Fri, pre-market Mon
    stamps = pd.to_datetime(["2026-10-02T23:30:00Z", "2026-10-05T08:00:00Z"], utc=True)
    bars = pd.DataFrame({"timestamp": stamps, "open": [400.0, 100.0], "high": [404.0, 101.0], "low": [396.0, 99.0],
                         "close": [400.0, 100.0], "volume": [10, 40], "trade_count": [3, 9], "vwap": [400.0, 100.0]})
    out = adjusted(bars, [(split(4, 1, ex="2026-10-05"), None)], "split")
    assert out["close"].tolist() == [100.0, 100.0] and out["volume"].tolist() == [40.0, 40.0]
    assert out["trade_count"].tolist() == [3, 9] and bars["close"].tolist() == [400.0, 100.0]  # raw left untouched
