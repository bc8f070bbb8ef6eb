"""identity: which company a symbol meant on a date, and which (symbol, asof) asks Alpaca for a company."""

from datetime import datetime, timezone

import pytest

from signal9_pipeline.identity import (
    Holder,
    Span,
    UnknownSymbolOnDateError,
    current_holder,
    holder_on,
    holders_by_symbol,
    name_changed,
    observation_day,
    released,
    renamed,
    request_symbol,
    resolve,
    sync_dates_agree,
)

# The FB/META/METV sequence (alpacahq/alpaca-trade-api-csharp issue 526): a metaverse ETF held META until
# 2022-01-28 and trades as METV from 2022-01-31; Facebook traded as FB until 2022-06-08, as META from 06-09.
ETF = [Span("META", None, "2022-01-31"), Span("METV", "2022-01-31", None)]
FACEBOOK = [Span("FB", None, "2022-06-09"), Span("META", "2022-06-09", None)]
HOLDERS = holders_by_symbol([("etf", ETF), ("facebook", FACEBOOK)])


def test_a_symbol_means_the_company_holding_it_on_the_date():
    assert resolve("META", HOLDERS["META"], "2022-01-03") == "etf"
    assert resolve("META", HOLDERS["META"], "2026-12-07") == "facebook"
    assert resolve("METV", HOLDERS["METV"], "2026-12-07") == "etf"
    # between the ETF leaving META and Facebook taking it, META meant its last holder, as Alpaca maps it
    assert resolve("META", HOLDERS["META"], "2022-03-01") == "etf"
    # a symbol nobody holds any more means its last holder
    assert resolve("FB", HOLDERS["FB"], "2026-12-07") == "facebook"


def test_a_symbol_before_its_first_holder_is_a_typed_error_naming_the_holders():
    holders = holders_by_symbol([("newco", [Span("TIC", "2024-05-01", None)])])["TIC"]
    with pytest.raises(UnknownSymbolOnDateError) as caught:
        resolve("TIC", holders, "2024-04-30")
    assert ("TIC" in str(caught.value) and "2024-04-30" in str(caught.value)
            and "newco from 2024-05-01" in str(caught.value))
    with pytest.raises(UnknownSymbolOnDateError, match="never held it"):
        resolve("NONE", [], "2024-04-30")


def test_the_request_names_each_company_by_a_symbol_it_holds_as_of_a_date():
    assert request_symbol(FACEBOOK, "2022-06-30") == ("META", "2022-06-30")
    assert request_symbol(FACEBOOK, "2021-06-30") == ("FB", "2021-06-30")  # a re-backfill of 2021 asks for FB then
    assert request_symbol(ETF, "2022-06-30") == ("METV", "2022-06-30")
    old_holder = [Span("TIC", None, "2024-05-01")]  # its ticker passed to another company on 2024-05-01
    assert request_symbol(old_holder, "2024-06-30") == ("TIC", "2024-04-30")
    newcomer = [Span("TIC", "2024-05-01", None)]
    assert request_symbol(newcomer, "2024-03-29") == ("TIC", "2024-05-01")


def test_renames_releases_and_name_changes_shape_the_spans():
    spans = renamed([Span("OLD")], "NEW", "2026-11-24", "2026-11-23")
    assert spans == [Span("OLD", None, "2026-11-24"), Span("NEW", "2026-11-24", None, "sync", "2026-11-23")]
    assert renamed(spans, "NEW", "2026-11-25", "2026-11-24") == spans  # already there (a name change dated it first)
    assert released([Span("TIC")], "TIC", "2024-05-01") == [Span("TIC", None, "2024-05-01")]
    dated = name_changed(spans, "OLD", "NEW", "2026-11-22")
    assert dated == [Span("OLD", None, "2026-11-22"), Span("NEW", "2026-11-22", None, "name_change", "2026-11-23")]
    assert name_changed([Span("OLD")], "OLD", "NEW", "2026-11-22") == [Span("OLD", None, "2026-11-22"),
                                                                        Span("NEW", "2026-11-22", None, "name_change")]
    assert name_changed([Span("ELSE")], "OLD", "NEW", "2026-11-22") is None


def test_a_name_change_agrees_with_a_sync_observation_only_inside_its_window():
    seen = Span("NEW", "2026-11-24", None, "sync", "2026-11-20")
    assert sync_dates_agree(seen, "2026-11-20") and sync_dates_agree(seen, "2026-11-24")  # the list may change intraday
    assert not sync_dates_agree(seen, "2026-11-19") and not sync_dates_agree(seen, "2026-11-25")
    assert sync_dates_agree(Span("NEW", "2026-11-24", None, "sync", "2026-11-24"), "2026-11-24")  # two syncs that day
    assert sync_dates_agree(Span("NEW", "2026-11-24", None, "name_change"), "2026-11-01")


def test_the_symbol_item_shows_the_listed_holder_else_the_last():
    holders = [Holder("old", None, "2024-05-01"), Holder("new", "2024-05-01", None)]
    assert current_holder(holders, {"new"}).alpaca_id == "new"
    assert current_holder([Holder("twin", None, None), Holder("listed", None, None)], {"listed"}).alpaca_id == "listed"
    assert current_holder([Holder("a", None, "2024-01-01"), Holder("b", "2024-01-01", "2024-06-01")],
                          set()).alpaca_id == "b"
    assert holder_on(holders, "2024-04-30").alpaca_id == "old" and holder_on(holders, "2024-05-01").alpaca_id == "new"


def test_a_list_seen_after_the_extended_hours_belongs_to_the_next_trading_day():
    assert observation_day(datetime(2026, 6, 9, 4, 0, tzinfo=timezone.utc)) == "2026-06-09"  # 00:00 New York (EDT)
    assert observation_day(datetime(2026, 12, 7, 4, 0, tzinfo=timezone.utc)) == "2026-12-07"  # 23:00 New York (EST)
    assert observation_day(datetime(2026, 12, 7, 15, 0, tzinfo=timezone.utc)) == "2026-12-07"
