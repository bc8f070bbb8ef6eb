"""Contract: what the sandbox and the pipeline rely on in Alpaca's recorded corporate-actions bodies.

The pipeline reads splits, dividends and renames from `GET /v1/corporate-actions`
and adjusts or annotates bars with them; these tests pin, on every recorded body
(corpus kind "corporate_actions"), the envelope, each type's keys and their JSON
types, YYYY-MM-DD dates and numeric rates, and that alpaca-py's own
`CorporateActionsSet` parses the bodies of the current shape (ids on every entry).
The sandbox's answers are then held to the same keys and types per type.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, timedelta

import pytest
import requests
from alpaca.data.models.corporate_actions import CorporateActionsSet

from signal9_pipeline_tests.conftest import auth_headers
from signal9_pipeline_tests.contract import corpus

DATE = re.compile(r"^\d{4}-\d\d-\d\d$")
# Fields per body key: the alpaca-py models (alpaca/data/models/corporate_actions.py) plus `id`; required are the
# ones alpaca-trade-api-go's structs never omit (marketdata/entities.go), so older bodies without id/CUSIPs pass.
ALLOWED = {
    "forward_splits": {"id", "symbol", "cusip", "new_rate", "old_rate", "process_date", "ex_date", "record_date",
                       "payable_date", "due_bill_redemption_date"},
    "reverse_splits": {"id", "symbol", "old_cusip", "new_cusip", "new_rate", "old_rate", "process_date", "ex_date",
                       "record_date", "payable_date"},
    "unit_splits": {"id", "old_symbol", "old_cusip", "old_rate", "new_symbol", "new_cusip", "new_rate",
                    "alternate_symbol", "alternate_cusip", "alternate_rate", "process_date", "effective_date",
                    "payable_date"},
    "stock_dividends": {"id", "symbol", "cusip", "rate", "process_date", "ex_date", "record_date", "payable_date"},
    "cash_dividends": {"id", "symbol", "cusip", "rate", "special", "foreign", "process_date", "ex_date", "record_date",
                       "payable_date", "due_bill_on_date", "due_bill_off_date"},
    "spin_offs": {"id", "source_symbol", "source_cusip", "source_rate", "new_symbol", "new_cusip", "new_rate",
                  "process_date", "ex_date", "record_date", "payable_date", "due_bill_redemption_date"},
    "cash_mergers": {"id", "acquirer_symbol", "acquirer_cusip", "acquiree_symbol", "acquiree_cusip", "rate",
                     "process_date", "effective_date", "payable_date"},
    "stock_mergers": {"id", "acquirer_symbol", "acquirer_cusip", "acquirer_rate", "acquiree_symbol", "acquiree_cusip",
                      "acquiree_rate", "process_date", "effective_date", "payable_date"},
    "stock_and_cash_mergers": {"id", "acquirer_symbol", "acquirer_cusip", "acquirer_rate", "acquiree_symbol",
                               "acquiree_cusip", "acquiree_rate", "cash_rate", "process_date", "effective_date",
                               "payable_date"},
    "redemptions": {"id", "symbol", "cusip", "rate", "process_date", "payable_date"},
    "name_changes": {"id", "old_symbol", "old_cusip", "new_symbol", "new_cusip", "process_date"},
    "worthless_removals": {"id", "symbol", "cusip", "process_date"},
    "rights_distributions": {"id", "source_symbol", "source_cusip", "new_symbol", "new_cusip", "rate", "process_date",
                             "ex_date", "record_date", "payable_date", "expiration_date"},
}
REQUIRED = {
    "forward_splits": {"symbol", "new_rate", "old_rate", "process_date", "ex_date"},
    "reverse_splits": {"symbol", "new_rate", "old_rate", "process_date", "ex_date"},
    "unit_splits": {"new_symbol", "new_rate", "old_symbol", "old_rate", "alternate_symbol", "alternate_rate",
                    "process_date", "effective_date"},
    "stock_dividends": {"symbol", "rate", "process_date", "ex_date"},
    "cash_dividends": {"symbol", "rate", "foreign", "special", "process_date", "ex_date"},
    "spin_offs": {"source_symbol", "source_rate", "new_symbol", "new_rate", "process_date", "ex_date"},
    "cash_mergers": {"acquiree_symbol", "rate", "process_date", "effective_date"},
    "stock_mergers": {"acquirer_symbol", "acquirer_rate", "acquiree_symbol", "acquiree_rate", "process_date",
                      "effective_date"},
    "stock_and_cash_mergers": {"acquirer_symbol", "acquirer_rate", "acquiree_symbol", "acquiree_rate", "cash_rate",
                               "process_date", "effective_date"},
    "redemptions": {"symbol", "rate", "process_date"},
    "name_changes": {"new_symbol", "old_symbol", "process_date"},
    "worthless_removals": {"symbol", "process_date"},
    "rights_distributions": {"source_symbol", "new_symbol", "rate", "process_date", "ex_date"},
}
RECORDINGS = corpus.of_kind(corpus.ACTIONS_KIND)


def json_type(key: str, value) -> str:
    """A field's JSON type; rates print as 1 or 0.125 alike, so every number is "number"."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if key.endswith("_date"):
        return "date" if isinstance(value, str) and DATE.match(value) else f"bad date {value!r}"
    return {str: "string", type(None): "null", list: "array", dict: "object"}[type(value)]


def recorded_types() -> dict[str, dict[str, set[str]]]:
    """Per body key, per field, the JSON types the recordings show."""
    seen: dict[str, dict[str, set[str]]] = {}
    for entry in RECORDINGS:
        for key, actions in corpus.actions_by_type(entry).items():
            for action in actions:
                for field, value in action.items():
                    seen.setdefault(key, {}).setdefault(field, set()).add(json_type(field, value))
    return seen


def test_there_are_recordings_of_splits_dividends_and_renames():
    kinds = {key for entry in RECORDINGS for key, actions in corpus.actions_by_type(entry).items() if actions}
    assert {"forward_splits", "reverse_splits", "cash_dividends", "name_changes"} <= kinds
    assert len(kinds) == 13  # every type at least once


@pytest.mark.parametrize("entry", RECORDINGS, ids=[e.name for e in RECORDINGS])
def test_each_recording_has_the_envelope_and_each_types_fields(entry: corpus.Entry):
    body = entry.body
    assert set(body) <= {"corporate_actions", "next_page_token"} and isinstance(body["corporate_actions"], dict)
    if entry.verbatim:  # fragments quoted in forum posts do not show the token
        assert set(body) == {"corporate_actions", "next_page_token"}
        assert body["next_page_token"] is None or isinstance(body["next_page_token"], str)
    for key, actions in corpus.actions_by_type(entry).items():
        assert key in ALLOWED and isinstance(actions, list) and actions, key  # types without entries are left out
        for action in actions:
            assert REQUIRED[key] <= set(action) <= ALLOWED[key], (key, sorted(action))
            for field, value in action.items():
                kind = json_type(field, value)
                if field.endswith("_date"):
                    assert kind == "date" and date.fromisoformat(value), (field, value)
                elif field.endswith("rate"):
                    assert kind == "number" and value > 0, (field, value)
                elif field in ("foreign", "special"):
                    assert kind == "boolean", (field, value)
                elif field == "id":
                    assert str(uuid.UUID(value)) == value
                else:
                    assert kind == "string" and value, (field, value)


CURRENT_SHAPE = [e for e in RECORDINGS
                 if all("id" in a for actions in corpus.actions_by_type(e).values() for a in actions)]


@pytest.mark.parametrize("entry", CURRENT_SHAPE, ids=[e.name for e in CURRENT_SHAPE])
def test_alpaca_py_parses_the_recordings_of_the_current_shape(entry: corpus.Entry):
    parsed = CorporateActionsSet(entry.body["corporate_actions"])
    for key, actions in corpus.actions_by_type(entry).items():
        assert [str(a.id) for a in parsed.data[key]] == [a["id"] for a in actions]
        for model, action in zip(parsed.data[key], actions):
            for field in ("ex_date", "process_date", "record_date", "payable_date"):
                if field in action:
                    assert getattr(model, field).isoformat() == action[field]


def test_the_only_older_recordings_lack_just_id_and_cusips():
    older = [e for e in RECORDINGS if e not in CURRENT_SHAPE]
    assert {e.name for e in older} == {"go_four_types_2024-03-10_2024-03-14", "forum_lsb_reverse_split_2024-10-04"}
    for entry in older:
        for actions in corpus.actions_by_type(entry).values():
            assert not any({"id", "cusip", "old_cusip", "new_cusip"} & set(a) for a in actions)


# --- the sandbox against the recordings ------------------------------------------------------------
@pytest.fixture(scope="module")
def served(default_universe) -> dict[str, list[dict]]:
    """Every action type the sandbox serves: the guaranteed split, reverse split and dividend, and a rename."""
    from signal9_devstack.sandbox import start_in_thread
    from signal9_pipeline_tests.conftest import TEST_KEY, TEST_SECRET

    universe = [a for a in default_universe if a["class"] == "us_equity" and a["status"] == "active"][:50]
    sandbox = start_in_thread(universe, api_key=TEST_KEY, secret_key=TEST_SECRET, rate_limit_per_minute=10_000)
    try:
        renamed = [dict(a, symbol="RNMD") if i == 0 else a for i, a in enumerate(universe)]
        requests.put(f"{sandbox.url}/_sandbox/universe", json=renamed, timeout=10).raise_for_status()
        today = date.today()
        answer = requests.get(f"{sandbox.url}/v1/corporate-actions", headers=auth_headers(), timeout=30,
                              params={"start": (today - timedelta(days=120)).isoformat(),
                                      "end": (today + timedelta(days=60)).isoformat(), "limit": 1000})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert set(body) == {"corporate_actions", "next_page_token"}
        return body["corporate_actions"]
    finally:
        sandbox.shutdown()
        sandbox.server_close()


@pytest.mark.parametrize("key", ["forward_splits", "reverse_splits", "cash_dividends", "name_changes"])
def test_the_sandbox_serves_each_type_with_the_recorded_keys_and_json_types(served, key):
    recorded = recorded_types()[key]
    current = [set(a) for e in CURRENT_SHAPE for a in corpus.actions_by_type(e).get(key, [])]
    assert served.get(key), f"the sandbox served no {key}"
    for action in served[key]:
        assert set.intersection(*current) <= set(action) <= set(recorded), (key, sorted(action))
        assert {f: {json_type(f, v)} for f, v in action.items()} == \
            {f: recorded[f] for f in action}, key
