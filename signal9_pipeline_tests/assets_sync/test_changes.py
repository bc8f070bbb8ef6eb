"""plan_sync: the pure diff between Alpaca's validated list and the table's companies and symbols."""

import random

from signal9_pipeline.assets_sync.changes import (
    HISTORY_LIMIT,
    Observation,
    content_hash,
    plan_loading_whole,
    plan_name_changes,
    plan_sync,
    was_listed_on,
)
from signal9_pipeline.identity import Span, spans_of
from signal9_pipeline.tables.assets import COMPANY_DECISION_FIELDS

DAY1 = Observation("2026-11-23T04:00:00Z", "2026-11-23")
DAY2 = Observation("2026-11-24T04:00:00Z", "2026-11-24", "2026-11-23")
DAY3 = Observation("2026-11-25T04:00:00Z", "2026-11-25", "2026-11-24")


def row(symbol, alpaca_id=None, status="active", tradable=True, **extra):
    return {"alpaca_id": alpaca_id or f"id-{symbol}", "symbol": symbol, "name": f"{symbol} Inc", "exchange": "NYSE",
            "asset_class": "us_equity", "status": status, "tradable": tradable, "marginable": True, "shortable": True,
            "easy_to_borrow": True, "fractionable": True, "maintenance_margin_requirement": "30",
            "margin_requirement_long": "30", "margin_requirement_short": "30", "min_order_size": None,
            "min_trade_increment": None, "price_increment": None, "attributes": [], **extra}


class Table:
    """The assets table as plans leave it: companies by id, symbol items by symbol."""

    def __init__(self):
        self.companies: dict[str, dict] = {}
        self.views: dict[str, dict] = {}

    def sync(self, rows, seen=DAY1, **held_back):
        plan = plan_sync(rows, list(self.companies.values()), {s: v["view_of"] for s, v in self.views.items()}, seen,
                         **held_back)
        self.apply(plan)
        return plan

    def apply(self, plan):
        self.companies.update({item["alpaca_id"]: item for item, _ in plan.companies})
        self.views.update({v["symbol"]: v for v in plan.views})

    def company(self, symbol):
        return self.companies[self.views[symbol]["alpaca_id"]]


def test_first_sync_stores_only_listed_companies_with_pending_pollenation_and_a_symbol_item_each():
    table = Table()
    plan = table.sync([row("AAA"), row("BBB", status="inactive", tradable=False), row("CCC", tradable=False)])
    assert set(table.companies) == {"id-AAA"} and set(table.views) == {"AAA"} and plan.counts["new"] == 1
    company, view = table.companies["id-AAA"], table.views["AAA"]
    assert company["asset_id"] == "ID#id-AAA" and company["pollenation_status"] == "pending"
    assert company["pollenation_pending"] == "1" and company["pollenation_reason"] == "new"
    assert company["symbols"] == [{"symbol": "AAA", "source": "sync"}]  # since before the table knew it
    assert (company["first_seen_at"] == company["created_at"] == DAY1.now
            and company["content_hash"] == content_hash(row("AAA")))
    assert view["asset_id"] == "ASSET#AAA" and view["alpaca_id"] == "id-AAA" and view["status"] == "active"
    assert view["holders"] == [{"alpaca_id": "id-AAA"}] and "pollenation_pending" not in view and "symbols" not in view


def test_unchanged_list_plans_no_write():
    table = Table()
    table.sync([row("AAA"), row("BBB")])
    plan = table.sync([row("AAA"), row("BBB")], DAY2)
    assert plan.companies == [] and plan.views == [] and plan.counts["unchanged"] == 2


def test_a_field_change_is_an_update_that_keeps_bookkeeping_and_rewrites_the_symbol_item():
    table = Table()
    table.sync([row("AAA")])
    table.companies["id-AAA"]["pollenation_status"] = "done"
    plan = table.sync([row("AAA", name="AAA Holdings")], DAY2)
    assert plan.counts["updated"] == 1 and plan.changes[0].detail == "name"
    company = table.companies["id-AAA"]
    assert (company["pollenation_status"] == "done" and company["created_at"] == DAY1.now
            and company["updated_at"] == DAY2.now)
    assert table.views["AAA"]["name"] == "AAA Holdings" and table.views["AAA"]["updated_at"] == DAY2.now


def test_missing_or_inactive_companies_are_marked_inactive_with_an_event_never_deleted():
    table = Table()
    table.sync([row("AAA"), row("BBB"), row("CCC")])
    plan = table.sync([row("AAA"), row("BBB", status="inactive", tradable=False)], DAY2)
    assert plan.counts["deactivated"] == 2 and set(table.views) == {"AAA", "BBB", "CCC"}
    for symbol in ("BBB", "CCC"):
        company = table.company(symbol)
        assert (company["status"] == "inactive" and company["status_changed_at"] == DAY2.now
                and company["events_pending"] == "1")
        event = company["pending_events"][-1]
        assert event["detail_type"] == "assetStatusChanged" and event["detail"]["oldStatus"] == "active"
        assert event["detail"]["newStatus"] == "inactive" and event["detail"]["alpacaId"] == f"id-{symbol}"
        assert table.views[symbol]["status"] == "inactive"
    assert plan.listed_after == {"AAA"}


def test_reactivation_keeps_first_seen_and_is_not_pollenated_again():
    table = Table()
    table.sync([row("AAA")])
    table.companies["id-AAA"].update(pollenation_status="done")
    table.companies["id-AAA"].pop("pollenation_pending")
    table.sync([], DAY2)
    plan = table.sync([row("AAA")], DAY3)
    company = table.companies["id-AAA"]
    assert plan.counts["reactivated"] == 1 and company["status"] == "active"
    assert company["first_seen_at"] == DAY1.now and company["pollenation_status"] == "done"
    assert [h["status"] for h in company["status_history"]] == ["active", "inactive", "active"]
    assert len(company["pending_events"]) == 2  # both changes still owed: nothing published them yet


def test_a_rename_keeps_the_company_and_splits_its_symbol_history_at_the_observation_day():
    table = Table()
    table.sync([row("OLD", alpaca_id="X")])
    table.companies["X"]["pollenation_status"] = "done"
    plan = table.sync([row("NEW", alpaca_id="X")], DAY2)
    assert plan.counts == {**plan.counts, "renamed": 1, "new": 0, "deactivated": 0}
    company = table.companies["X"]
    assert spans_of(company["symbols"]) == [Span("OLD", None, "2026-11-24"),
                                            Span("NEW", "2026-11-24", None, "sync", "2026-11-23")]
    # fundamentals are keyed by symbol
    assert company["status"] == "active" and company["pollenation_status"] == "pending"
    assert company["pollenation_reason"] == "renamed"
    event = company["pending_events"][-1]["detail"]
    assert event["symbol"] == "OLD" and event["newStatus"] == "inactive" and event["renamedTo"] == "NEW"
    old, new = table.views["OLD"], table.views["NEW"]
    assert old["status"] == "inactive" and old["renamed_to"] == "NEW" and old["alpaca_id"] == "X"
    assert new["status"] == "active" and new["renamed_from"] == "OLD" and new["alpaca_id"] == "X"


def test_a_reused_ticker_is_a_new_company_and_the_old_one_stays_whole_under_its_id():
    table = Table()
    table.sync([row("TIC", alpaca_id="OLDCO")])
    table.sync([row("TIC", alpaca_id="OLDCO", status="inactive", tradable=False)], DAY2)
    before = dict(table.companies["OLDCO"])
    plan = table.sync([row("TIC", alpaca_id="OLDCO", status="inactive", tradable=False), row("TIC", alpaca_id="NEWCO")],
                      DAY3)
    assert plan.counts["new"] == 1 and plan.counts["reactivated"] == 0
    newco, oldco = table.companies["NEWCO"], table.companies["OLDCO"]
    assert newco["pollenation_status"] == "pending" and newco["pollenation_reason"] == "new"
    assert [h["status"] for h in newco["status_history"]] == ["active"]  # no inherited history
    assert spans_of(newco["symbols"]) == [Span("TIC", "2026-11-25", None, "sync", "2026-11-24")]
    assert spans_of(oldco["symbols"]) == [Span("TIC", None, "2026-11-25")]  # the ticker passed on that day
    assert oldco["status_history"] == before["status_history"] and oldco["created_at"] == before["created_at"]
    view = table.views["TIC"]
    assert view["alpaca_id"] == "NEWCO" and view["status"] == "active"
    assert view["holders"] == [{"alpaca_id": "OLDCO", "end": "2026-11-25"},
                               {"alpaca_id": "NEWCO", "start": "2026-11-25"}]


def test_quarantined_ids_and_symbols_leave_their_companies_exactly_as_they_are():
    table = Table()
    table.sync([row("AAA"), row("BBB"), row("CCC")])
    plan = table.sync([row("AAA")], DAY2, held_back_ids={"id-BBB"}, held_back_symbols={"CCC"})
    assert plan.companies == [] and plan.listed_after == {"AAA", "BBB", "CCC"}


def test_history_is_bounded():
    table = Table()
    table.sync([row("AAA")])
    for day in range(2 * HISTORY_LIMIT):
        table.sync([] if day % 2 == 0 else [row("AAA")],
                   Observation(f"2026-12-{day + 1:02d}T04:00:00Z", f"2026-12-{day + 1:02d}"))
    assert len(table.companies["id-AAA"]["status_history"]) == HISTORY_LIMIT


def test_replanning_after_a_partial_write_converges():
    rows = [row(f"S{i}") for i in range(40)]
    plan = plan_sync(rows, [], {}, DAY1)
    half = [item for item, _ in plan.companies[:17]]  # a crash after the first batches, before any symbol item
    rerun = plan_sync(rows, half, {}, DAY2)
    assert {i["symbol"] for i, _ in rerun.companies} == {f"S{i}" for i in range(40)} - {i["symbol"] for i in half}
    assert {v["symbol"] for v in rerun.views} == {f"S{i}" for i in range(40)}  # the missing symbol items are written
    table = Table()
    table.companies = {i["alpaca_id"]: i for i in half}
    table.apply(rerun)
    assert table.sync(rows, DAY3).companies == [] and table.sync(rows, DAY3).views == []


def test_event_ids_are_stable_for_the_same_change():
    table = Table()
    table.sync([row("AAA")])
    first = plan_sync([], list(table.companies.values()), {}, DAY2).companies[0][0]["pending_events"][0]["event_id"]
    again = plan_sync([], list(table.companies.values()), {}, DAY2).companies[0][0]["pending_events"][0]["event_id"]
    assert first == again and len(first) == 32


def test_a_company_counts_as_listed_on_a_day_by_its_status_history_and_the_start_of_its_symbols():
    item = {"status_history": [{"status": "active", "at": "2024-03-01T04:00:00Z"},
                               {"status": "inactive", "at": "2024-03-10T04:00:00Z"},
                               {"status": "active", "at": "2024-03-20T15:00:00Z"}]}
    # a New York winter day
    day = lambda d: (d, f"{d}T05:00:00Z", f"{d[:8]}{int(d[8:]) + 1:02d}T05:00:00Z")  # noqa: E731
    # before the first record: Alpaca simply has no bars if it did not trade
    assert was_listed_on(item, *day("2024-02-20"))
    assert was_listed_on(item, *day("2024-03-09"))
    assert not was_listed_on(item, *day("2024-03-15"))  # delisted then
    assert was_listed_on(item, *day("2024-03-20"))  # listed again during the day
    assert was_listed_on({}, *day("2024-03-15"))
    took_over = {**item, "symbols": [{"symbol": "TIC", "start": "2024-03-05"}]}  # a company that took over a ticker
    assert not was_listed_on(took_over, *day("2024-03-04")) and was_listed_on(took_over, *day("2024-03-05"))


def test_a_name_change_dates_a_rename_the_sync_saw_and_records_one_it_has_not():
    table = Table()
    table.sync([row("OLD", alpaca_id="X"), row("ELSE", alpaca_id="Y")])
    table.sync([row("NEW", alpaca_id="X"), row("ELSE", alpaca_id="Y")], DAY3)  # seen after 11-23, by 11-25
    plan = plan_name_changes([("OLD", "NEW", "2026-11-24"), ("ELSE", "OTHER", "2026-11-25")],
                             list(table.companies.values()),
                             {s: v["view_of"] for s, v in table.views.items()}, "2026-11-26T05:00:00Z")
    table.apply(plan)
    assert spans_of(table.companies["X"]["symbols"]) == [Span("OLD", None, "2026-11-24"),  # the sync's window is kept
                                                          Span("NEW", "2026-11-24", None, "name_change", "2026-11-24")]
    assert spans_of(table.companies["Y"]["symbols"]) == [Span("ELSE", None, "2026-11-25"),
                                                          Span("OTHER", "2026-11-25", None, "name_change")]
    assert table.companies["Y"]["symbol"] == "ELSE"  # Alpaca's fields stay as the sync saw them
    assert table.views["OTHER"]["alpaca_id"] == "Y" and table.views["ELSE"]["renamed_to"] == "OTHER"
    # the sync then sees Y's rename: its dated history stands
    table.sync([row("NEW", alpaca_id="X"), row("OTHER", alpaca_id="Y")],
               Observation("2026-11-27T04:00:00Z", "2026-11-27", "2026-11-25"))
    assert spans_of(table.companies["Y"]["symbols"])[-1] == Span("OTHER", "2026-11-25", None, "name_change")
    again = plan_name_changes([("OLD", "NEW", "2026-11-24")], list(table.companies.values()),
                              {s: v["view_of"] for s, v in table.views.items()}, "2026-11-28T05:00:00Z")
    assert again.companies == [] and again.views == []


def test_a_plan_from_the_decision_fields_loading_what_it_copies_is_the_plan_from_whole_items():
    """A sync scans only COMPANY_DECISION_FIELDS and loads whole items of what it changes or shows: the same plan."""
    rng = random.Random(3)
    rows = [row(f"S{i:03d}") for i in range(120)]
    table = Table()
    table.sync(rows)
    table.companies["id-S001"]["pollenation_status"] = "done"
    today = [r for r in rows[1:] if rng.random() > 0.1]  # some missing from Alpaca's list
    today = [row(r["symbol"], name="Renamed Co") if rng.random() < 0.05 else r for r in today]  # field changes
    today += [row(f"N{i}") for i in range(5)] + [row("R001", alpaca_id=rows[0]["alpaca_id"])]  # new; a rename
    views = {s: v["view_of"] for s, v in table.views.items()}
    whole = plan_sync(today, list(table.companies.values()), views, DAY2, held_back_ids={"id-S050"})
    assert whole.counts["renamed"] == 1 and whole.counts["deactivated"] > 0 and whole.counts["updated"] > 0
    loads = []

    def load(ids):
        loads.append(set(ids))
        return [table.companies[i] for i in ids if i in table.companies]

    cut = [{k: i[k] for k in COMPANY_DECISION_FIELDS if k in i} for i in table.companies.values()]
    planned = plan_loading_whole(lambda companies: plan_sync(today, companies, views, DAY2, held_back_ids={"id-S050"}),
                                 cut, load)
    assert planned.companies == whole.companies and planned.views == whole.views and planned.counts == whole.counts
    assert planned.changes == whole.changes and planned.listed_after == whole.listed_after
    assert set().union(*loads) == {item["alpaca_id"] for item, read in whole.companies if read is not None}
    loads.clear()
    unchanged = plan_loading_whole(lambda companies: plan_sync(rows, companies, views, DAY2), cut, load)
    assert unchanged.companies == [] and unchanged.views == [] and loads == []  # a no-change sync loads nothing whole
