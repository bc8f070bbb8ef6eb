"""The daily asset sync end to end: sandbox over HTTP -> validation -> dynalite, with its checks and guards."""

import random

import boto3
import pytest

from signal9_devstack.sandbox.churn import churn, is_listed
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.tables.assets import AssetsTable, symbol_key
from signal9_pipeline_tests.support import EventTap, check_results, put_universe, run_sync, small_universe, sync_counts


def table_items(env) -> dict[str, dict]:
    """The symbol items (`ASSET#{symbol}`), by symbol: what Signal9's other services read."""
    return {i["symbol"]: i for i in AssetsTable(DynamoDBResource.from_settings()).views()}


def companies(env) -> dict[str, dict]:
    """The company items (`ID#{alpaca_id}`), by their current symbol."""
    return {i["symbol"]: i for i in AssetsTable(DynamoDBResource.from_settings()).companies()}


def test_first_sync_loads_every_listed_asset_and_a_second_writes_nothing(sync_env, default_universe):
    first = run_sync()
    assert first.success
    listed = {a["symbol"] for a in default_universe if is_listed(a)}
    counts = sync_counts(first)
    assert counts["new"] == len(listed) == 12_062 and counts["write_requests"] >= len(listed) / 25
    items = table_items(sync_env)
    assert set(items) == listed
    brk = items["BRK.B"]
    assert brk["asset_id"] == symbol_key("BRK.B") and brk["data_source"] == "alpaca" and brk["status"] == "active"
    for field in ("first_seen_at", "last_seen_at", "created_at", "updated_at", "status_changed_at", "alpaca_id",
                  "attributes"):
        assert brk[field]
    assert brk["holders"] == [{"alpaca_id": brk["alpaca_id"]}]
    company = companies(sync_env)["BRK.B"]
    assert (company["asset_id"] == f"ID#{brk['alpaca_id']}"
            and company["symbols"] == [{"symbol": "BRK.B", "source": "sync"}])
    assert company["pollenation_status"] == "pending" and company["pollenation_pending"] == "1"
    assert items["BTC/USD"]["min_order_size"] and items["BTC/USD"]["asset_class"] == "crypto"
    assert all(item["name"] == item["name"].strip() and "  " not in item["name"] for item in items.values())
    assert all(check_results(first).values())

    second = run_sync()
    assert second.success
    assert sync_counts(second) == {"new": 0, "updated": 0, "deactivated": 0, "reactivated": 0, "renamed": 0,
                                   "unchanged": len(listed), "write_requests": 0}
    assert table_items(sync_env) == items


def test_listings_delistings_reactivations_and_renames_are_exactly_what_changes(sync_env, default_universe):
    rng = random.Random(42)
    base = small_universe(default_universe)
    put_universe(sync_env, base)
    assert run_sync().success
    prep = churn(base, rng, delistings=10)
    put_universe(sync_env, prep.universe)
    assert sync_counts(run_sync())["deactivated"] == 10
    still_there = [s for s in prep.delisted if any(a["symbol"] == s for a in prep.universe)]
    before = table_items(sync_env)

    day = churn(prep.universe, rng, listings=50, delistings=30, reactivations=5, renames=2, reactivate_from=still_there)
    put_universe(sync_env, day.universe)
    result = run_sync()
    assert result.success
    assert sync_counts(result) == {"new": 50, "updated": 0, "deactivated": 30, "reactivated": 5, "renamed": 2,
                                   "unchanged": len(before) - 30 - 5 - 2,
                                   "write_requests": sync_counts(result)["write_requests"]}
    after = table_items(sync_env)
    changed = {s for s in after if after[s] != before.get(s)}
    assert changed == (set(day.listed) | set(day.delisted) | set(day.reactivated) | set(day.renamed)
                       | set(day.renamed.values()))
    for symbol in day.listed:
        assert after[symbol]["status"] == "active" and companies(sync_env)[symbol]["pollenation_status"] == "pending"
    for symbol in day.delisted:
        item = after[symbol]
        assert item["status"] == "inactive" and item["status_changed_at"] > before[symbol]["status_changed_at"]
        assert item["status_history"][-1]["status"] == "inactive"
        company = companies(sync_env)[symbol]
        assert "pending_events" not in company and "events_pending" not in company  # published by asset_status_events
    for symbol in day.reactivated:
        assert after[symbol]["status"] == "active" and after[symbol]["status_history"][-1]["status"] == "active"
        assert after[symbol]["first_seen_at"] == before[symbol]["first_seen_at"]
    for old, new in day.renamed.items():
        assert after[old]["status"] == "inactive" and after[old]["renamed_to"] == new
        assert after[new]["renamed_from"] == old and after[new]["alpaca_id"] == after[old]["alpaca_id"]
        assert [s["symbol"] for s in companies(sync_env)[new]["symbols"]] == [old, new]  # one company, one history
    assert len(after) == len(before) + 50 + 2  # nothing deleted, ever
    assert all(check_results(result).values())


@pytest.mark.parametrize("keep_fraction", [0.0, 0.6])
def test_an_empty_or_truncated_answer_trips_the_guard_and_writes_nothing(sync_env, default_universe, keep_fraction):
    base = small_universe(default_universe)
    put_universe(sync_env, base)
    assert run_sync().success
    before = table_items(sync_env)
    truncated = random.Random(1).sample(base, int(len(base) * keep_fraction))
    put_universe(sync_env, truncated)
    result = run_sync()
    assert not result.success
    assert check_results(result)["mass_delisting_guard"] is False
    assert not result.asset_materializations_for_node("assets_table")
    assert table_items(sync_env) == before
    metrics = boto3.client("cloudwatch").list_metrics(Namespace="Signal9/Pipeline",
                                                      MetricName="MassDelistingGuardTripped")
    assert metrics["Metrics"]


def test_an_operator_can_accept_a_mass_delisting_on_purpose(sync_env, default_universe):
    base = small_universe(default_universe, n=100)
    put_universe(sync_env, base)
    assert run_sync().success
    put_universe(sync_env, base[:50])
    result = run_sync(allow_mass_delisting=True)
    assert result.success and check_results(result)["mass_delisting_guard"] is True
    assert sync_counts(result)["deactivated"] == sum(is_listed(a) for a in base[50:])


def test_invalid_rows_are_quarantined_never_written_and_never_deactivate_their_item(sync_env, default_universe):
    base = small_universe(default_universe, n=300)  # 3 bad rows stay under the 1% quarantine threshold
    put_universe(sync_env, base)
    assert run_sync().success
    hostile = [dict(a) for a in base]
    hostile[0]["tradable"] = "yes"  # an existing listing sent malformed: left as it is
    hostile.append({**base[1], "id": "not-a-uuid", "symbol": "EVIL$"})
    hostile.append({**base[2], "id": "4b6a8c1e-0f1e-4c58-9d7f-8f7e6d5c4b3a", "symbol": "../ASSET#X"})
    put_universe(sync_env, hostile)
    result = run_sync()
    assert result.success
    validated = result.output_for_node("validated_assets")
    assert {q.symbol for q in validated.quarantined} == {base[0]["symbol"], "EVIL$", "../ASSET#X"}
    assert all(q.reason for q in validated.quarantined)
    items = table_items(sync_env)
    assert items[base[0]["symbol"]]["status"] == "active" and "EVIL$" not in items and "../ASSET#X" not in items
    assert sync_counts(result)["deactivated"] == 0
    assert all(check_results(result).values())


def test_a_high_quarantine_rate_blocks_the_write(sync_env, default_universe):
    base = small_universe(default_universe, n=100)
    broken = [{**a, "id": "broken"} if i % 10 == 0 else a for i, a in enumerate(base)]
    put_universe(sync_env, broken)
    result = run_sync()
    assert not result.success and check_results(result)["quarantine_rate"] is False
    assert table_items(sync_env) == {}


def test_alpaca_refusing_the_keys_fails_with_the_typed_error_and_leaves_the_table(sync_env, default_universe):
    import requests

    base = small_universe(default_universe, n=50)
    put_universe(sync_env, base)
    assert run_sync().success
    before = table_items(sync_env)
    requests.post(f"{sync_env['SIGNAL9_SANDBOX_URL']}/_sandbox/faults",
                  json={"error_rate": 1.0, "error_statuses": [401]}, timeout=10)
    result = run_sync()
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    error = failure.event_specific_data.error
    assert failure.step_key == "alpaca_assets" and "Failure: AlpacaAuthError: Alpaca refused" in error.message
    assert error.cause.cls_name == "AlpacaAuthError"
    requests_made = requests.get(f"{sync_env['SIGNAL9_SANDBOX_URL']}/_sandbox/stats", timeout=10).json()["requests"]
    assert len([r for r in requests_made if r["status"] == 401]) == 1  # no step retries, no retry storm
    assert table_items(sync_env) == before


def test_sync_complete_event_carries_the_counts(sync_env, default_universe):
    tap = EventTap(sync_env["SIGNAL9_EVENT_BUS"], "sync-complete-test", ["assetSyncComplete"])
    put_universe(sync_env, small_universe(default_universe, n=20))
    result = run_sync()
    assert result.success
    details = [e["detail"] for e in tap.drain()]
    assert len(details) == 1 and details[0]["new"] == 30 and details[0]["eventId"].endswith(result.run_id)
