"""plan_sync: the pure diff between Alpaca's validated list and the table's items."""

from signal9_pipeline.assets_sync.changes import HISTORY_LIMIT, content_hash, plan_sync

NOW, LATER = "2026-11-23T04:00:00Z", "2026-11-24T04:00:00Z"


def row(symbol, alpaca_id=None, status="active", tradable=True, **extra):
    return {"alpaca_id": alpaca_id or f"id-{symbol}", "symbol": symbol, "name": f"{symbol} Inc", "exchange": "NYSE",
            "asset_class": "us_equity", "status": status, "tradable": tradable, "marginable": True, "shortable": True,
            "easy_to_borrow": True, "fractionable": True, "maintenance_margin_requirement": "30",
            "margin_requirement_long": "30", "margin_requirement_short": "30", "min_order_size": None,
            "min_trade_increment": None, "price_increment": None, "attributes": [], **extra}


def table_after(rows, items=(), now=NOW, **kwargs):
    plan = plan_sync(rows, list(items), now=now, **kwargs)
    merged = {i["symbol"]: i for i in items}
    merged.update({i["symbol"]: i for i in plan.puts})
    return plan, merged


def test_first_sync_stores_only_listed_assets_with_pending_pollenation():
    plan, table = table_after([row("AAA"), row("BBB", status="inactive", tradable=False), row("CCC", tradable=False)])
    assert set(table) == {"AAA"} and plan.counts["new"] == 1
    item = table["AAA"]
    assert item["asset_id"] == "ASSET#AAA" and item["pollenation_status"] == "pending" and item["pollenation_pending"] == "1"
    assert item["first_seen_at"] == item["created_at"] == NOW and item["content_hash"] == content_hash(row("AAA"))


def test_unchanged_list_plans_no_write():
    _, table = table_after([row("AAA"), row("BBB")])
    plan, _ = table_after([row("AAA"), row("BBB")], table.values(), now=LATER)
    assert plan.puts == [] and plan.counts["unchanged"] == 2


def test_a_field_change_is_an_update_that_keeps_bookkeeping():
    _, table = table_after([row("AAA")])
    table["AAA"]["pollenation_status"] = "done"
    plan, after = table_after([row("AAA", name="AAA Holdings")], table.values(), now=LATER)
    assert plan.counts["updated"] == 1 and plan.changes[0].detail == "name"
    assert after["AAA"]["pollenation_status"] == "done" and after["AAA"]["created_at"] == NOW
    assert after["AAA"]["updated_at"] == LATER and "pollenation_pending" not in after["AAA"]


def test_missing_or_inactive_assets_are_marked_inactive_with_an_event_never_deleted():
    _, table = table_after([row("AAA"), row("BBB"), row("CCC")])
    plan, after = table_after([row("AAA"), row("BBB", status="inactive", tradable=False)], table.values(), now=LATER)
    assert plan.counts["deactivated"] == 2 and set(after) == {"AAA", "BBB", "CCC"}
    for symbol in ("BBB", "CCC"):
        item = after[symbol]
        assert item["status"] == "inactive" and item["status_changed_at"] == LATER and item["events_pending"] == "1"
        event = item["pending_events"][-1]
        assert event["detail_type"] == "assetStatusChanged" and event["detail"]["oldStatus"] == "active"
        assert event["detail"]["newStatus"] == "inactive" and event["detail"]["alpacaId"] == f"id-{symbol}"
    assert plan.listed_after == {"AAA"}


def test_reactivation_keeps_first_seen_and_is_not_pollenated_again():
    _, table = table_after([row("AAA")])
    table["AAA"].update(pollenation_status="done")
    table["AAA"].pop("pollenation_pending")
    _, table = table_after([], table.values(), now=LATER)
    plan, after = table_after([row("AAA")], table.values(), now="2026-11-25T04:00:00Z")
    assert plan.counts["reactivated"] == 1 and after["AAA"]["status"] == "active"
    assert after["AAA"]["first_seen_at"] == NOW and after["AAA"]["pollenation_status"] == "done"
    assert [h["status"] for h in after["AAA"]["status_history"]] == ["active", "inactive", "active"]
    assert len(after["AAA"]["pending_events"]) == 2  # both changes still owed: nothing published them yet


def test_rename_is_recorded_on_both_items():
    _, table = table_after([row("OLD", alpaca_id="X")])
    plan, after = table_after([row("NEW", alpaca_id="X")], table.values(), now=LATER)
    assert plan.counts["renamed"] == 1 and plan.counts["new"] == 0 and plan.counts["deactivated"] == 0
    assert after["OLD"]["status"] == "inactive" and after["OLD"]["renamed_to"] == "NEW"
    assert after["NEW"]["renamed_from"] == "OLD" and after["NEW"]["status"] == "active"
    assert after["OLD"]["pending_events"][-1]["detail"]["renamedTo"] == "NEW"
    assert after["NEW"]["pollenation_status"] == "pending"  # fundamentals are keyed by symbol


def test_held_back_symbols_are_left_exactly_as_they_are():
    _, table = table_after([row("AAA"), row("BBB")])
    plan, after = table_after([row("AAA")], table.values(), now=LATER, held_back={"BBB"})
    assert plan.puts == [] and after["BBB"] == table["BBB"] and plan.listed_after == {"AAA", "BBB"}


def test_history_is_bounded():
    _, table = table_after([row("AAA")])
    for day in range(2 * HISTORY_LIMIT):
        rows = [] if day % 2 == 0 else [row("AAA")]
        _, table = table_after(rows, table.values(), now=f"2026-12-{day + 1:02d}T04:00:00Z")
    assert len(table["AAA"]["status_history"]) == HISTORY_LIMIT


def test_replanning_after_a_partial_write_converges():
    rows = [row(f"S{i}") for i in range(40)]
    plan = plan_sync(rows, [], now=NOW)
    half_written = plan.puts[:17]  # a crash after the first batches
    rerun = plan_sync(rows, half_written, now=LATER)
    assert {p["symbol"] for p in rerun.puts} == {f"S{i}" for i in range(40)} - {p["symbol"] for p in half_written}
    finished = {i["symbol"]: i for i in half_written + rerun.puts}
    assert set(finished) == {f"S{i}" for i in range(40)}
    assert plan_sync(rows, list(finished.values()), now="2026-11-25T04:00:00Z").puts == []


def test_event_ids_are_stable_for_the_same_change():
    _, table = table_after([row("AAA")])
    first = plan_sync([], list(table.values()), now=LATER).puts[0]["pending_events"][0]["event_id"]
    again = plan_sync([], list(table.values()), now=LATER).puts[0]["pending_events"][0]["event_id"]
    assert first == again and len(first) == 32


def test_rerun_of_a_half_written_rename_leaves_the_pollenated_new_symbol_alone():
    """A sync died between a rename's two puts and the sensor pollenated the new symbol meanwhile."""
    _, table = table_after([row("OLD", alpaca_id="X")])
    rename = plan_sync([row("NEW", alpaca_id="X")], list(table.values()), now=LATER)
    new_item = next(p for p in rename.puts if p["symbol"] == "NEW")
    pollenated = {k: v for k, v in new_item.items() if k != "pollenation_pending"} | {"pollenation_status": "done"}
    rerun = plan_sync([row("NEW", alpaca_id="X")], [table["OLD"], pollenated], now="2026-11-24T05:00:00Z")
    assert [p["symbol"] for p in rerun.puts] == ["OLD"]
    assert rerun.puts[0]["renamed_to"] == "NEW" and rerun.counts["renamed"] == 1


def test_an_asset_counts_as_listed_on_a_day_by_its_status_history():
    from signal9_pipeline.assets_sync.changes import was_listed_on

    item = {"status_history": [{"status": "active", "at": "2024-03-01T04:00:00Z"},
                               {"status": "inactive", "at": "2024-03-10T04:00:00Z"},
                               {"status": "active", "at": "2024-03-20T15:00:00Z"}]}
    day = lambda d: (f"{d}T05:00:00Z", f"{d[:8]}{int(d[8:]) + 1:02d}T05:00:00Z")  # noqa: E731 - a New York winter day
    assert was_listed_on(item, *day("2024-02-20"))  # before the first record: Alpaca simply has no bars if it did not trade
    assert was_listed_on(item, *day("2024-03-09"))
    assert not was_listed_on(item, *day("2024-03-15"))  # delisted then
    assert was_listed_on(item, *day("2024-03-20"))  # listed again during the day
    assert was_listed_on({}, *day("2024-03-15"))


def test_a_plan_from_the_decision_fields_loading_what_changes_is_the_plan_from_whole_items():
    """A sync scans only DECISION_FIELDS and loads the whole items of what it changes: the same plan, put for put."""
    import random

    from signal9_pipeline.assets_sync.changes import DECISION_FIELDS, plan_loading_changed

    rng = random.Random(3)
    rows = [row(f"S{i:03d}") for i in range(120)]
    _, table = table_after(rows)
    table["S001"]["pollenation_status"] = "done"
    renamed = rows[0]
    today = [r for r in rows[1:] if rng.random() > 0.1]  # some missing from Alpaca's list
    today = [row(r["symbol"], name="Renamed Co") if rng.random() < 0.05 else r for r in today]  # field changes
    today += [row(f"N{i}") for i in range(5)] + [row("R001", alpaca_id=renamed["alpaca_id"])]  # new; a rename
    whole = plan_sync(today, list(table.values()), now=LATER, held_back={"S050"})
    assert whole.counts["renamed"] == 1 and whole.counts["deactivated"] > 0 and whole.counts["updated"] > 0
    loads = []

    def load(symbols):
        loads.append(set(symbols))
        return [table[s] for s in symbols if s in table]

    cut = [{k: i[k] for k in DECISION_FIELDS if k in i} for i in table.values()]
    planned = plan_loading_changed(today, cut, load, now=LATER, held_back={"S050"})
    assert planned.puts == whole.puts and planned.changes == whole.changes and planned.counts == whole.counts
    assert planned.listed_after == whole.listed_after
    assert set().union(*loads) == {s for s in whole.changed_symbols() if s in table} and renamed["symbol"] in loads[0]
    unchanged = plan_loading_changed(rows, cut, load, now=LATER)
    assert unchanged.puts == [] and len(loads) == 1  # a no-change sync loads nothing whole
