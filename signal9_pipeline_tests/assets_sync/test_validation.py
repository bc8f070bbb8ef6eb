import json
import re
import unicodedata
import uuid

import pandera.pandas as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signal9_pipeline.assets_sync.changes import Observation, plan_sync
from signal9_pipeline.assets_sync.validation import AssetSchema, Quarantined, validate_assets

# The forms a DynamoDB key `ASSET#{symbol}` may hold, written out again so that a loosened
# pattern in the module fails these tests.
ALLOWED_SYMBOL = re.compile(r"[A-Z][A-Z0-9]{0,6}(\.[A-Z]{1,4})?|[A-Z0-9]{2,10}/[A-Z0-9]{2,10}")
HOSTILE_STRINGS = [
    "' OR '1'='1", "AAPL'; DROP TABLE assets;--", '{"$ne": null}', "$where", "../etc/passwd", "ASSET#X",
    "\u0410APL", "AAPL\u200b", "AAPL\n", "\x00", "\u202eLPAA", "\ud800", "NaN", "1e400", "-1", "", " ", "A" * 300,
]
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def equity(**fields) -> dict:
    row = {
        "id": str(uuid.uuid4()), "class": "us_equity", "exchange": "NASDAQ", "symbol": "AAPL",
        "name": "Apple Inc. Common Stock", "status": "active", "tradable": True, "marginable": True,
        "maintenance_margin_requirement": 30, "margin_requirement_long": "30", "margin_requirement_short": "30",
        "shortable": True, "easy_to_borrow": True, "fractionable": True,
        "attributes": ["fractional_eh_enabled", "has_options"],
    }
    return row | fields


def crypto(**fields) -> dict:
    row = equity(**{
        "class": "crypto", "exchange": "CRYPTO", "symbol": "BTC/USD", "name": "Bitcoin / US Dollar",
        "marginable": False, "maintenance_margin_requirement": 100, "margin_requirement_long": "100",
        "margin_requirement_short": "100", "shortable": False, "easy_to_borrow": False, "attributes": [],
        "min_order_size": "0.000000002", "min_trade_increment": "0.000000001", "price_increment": "1",
    })
    return row | fields


def without(row: dict, field: str) -> dict:
    return {key: value for key, value in row.items() if key != field}


def accepted(row: dict) -> dict:
    """The valid record of a row that must pass on its own."""
    result = validate_assets([row])
    assert result.quarantined == [], result.quarantined
    return result.valid.iloc[0].to_dict()


def kept_name(name: object) -> tuple[str, dict[str, int]]:
    """The stored name of a sound equity with this name, which must be kept, and the warnings it gave."""
    result = validate_assets([equity(name=name)])
    assert result.quarantined == [] and len(result.valid) == 1, result.quarantined
    return result.valid.name.iloc[0], result.warnings


def rejection(row: object) -> str:
    """The reason a row that must be quarantined on its own is quarantined for."""
    result = validate_assets([row])
    assert result.valid.empty and len(result.quarantined) == 1
    return result.quarantined[0].reason


def assert_every_row_accounted_for(raw: list, result) -> None:
    rows = [q.row for q in result.quarantined]
    assert len(rows) == len(set(rows)) and all(0 <= row < len(raw) for row in rows)
    assert len(result.valid) + len(rows) == len(raw)
    assert list(result.valid.index) == list(range(len(result.valid)))
    assert all(ALLOWED_SYMBOL.fullmatch(symbol) for symbol in result.valid.symbol)
    assert all(q.reason and q.reason.isprintable() and len(q.reason) < 4_000 for q in result.quarantined)


@pytest.fixture(scope="module")
def universe_result(default_universe):
    return validate_assets(default_universe)


def test_default_universe_is_valid_its_inactive_twins_included(default_universe, universe_result):
    """Five symbols are listed twice, once active and once inactive: an earlier company under the same ticker."""
    assert_every_row_accounted_for(default_universe, universe_result)
    AssetSchema.validate(universe_result.valid)
    assert universe_result.quarantined == []
    valid = universe_result.valid
    twins = valid[valid.symbol.duplicated(keep=False)]
    assert len(twins) == 10 and twins.alpaca_id.is_unique
    assert sorted(twins.groupby("symbol").status.apply(sorted).map(tuple).unique()) == [("active", "inactive")]
    assert universe_result.warnings == {}


def test_default_universe_keeps_the_symbol_forms_naive_validators_reject(universe_result):
    valid = universe_result.valid.set_index("symbol")
    for symbol in ("AAPL", "BRK.B", "BF.B", "F.PRB", "FLYX.WS", "GRAF.U", "FACTW", "FATBP", "BTC/USD", "SUSHI/USDT",
                   "ETH/BTC"):
        assert symbol in valid.index
    assert valid.loc["GLD", "exchange"] == "NYSEARCA"
    assert valid.loc["BTC/USD", "asset_class"] == "crypto"
    assert (valid.exchange == "OTC").sum() > 1_000


def test_default_universe_names_are_trimmed_and_collapsed(default_universe, universe_result):
    padded = [a for a in default_universe if a["name"] != a["name"].strip() or "  " in a["name"]]
    assert padded
    names = set(universe_result.valid.name)
    assert all(name == name.strip() and "  " not in name for name in names)
    assert all(" ".join(a["name"].split()) in names for a in padded)


def test_default_universe_decimals_are_canonical_strings(universe_result):
    valid = universe_result.valid.set_index("symbol")
    assert valid.loc["AAPL", "maintenance_margin_requirement"] in {"30", "50", "100"}
    assert valid.loc["AAPL", "min_order_size"] is None
    increments = set(valid.loc[valid.asset_class == "crypto", "min_trade_increment"])
    assert increments == {"0.000000001", "0.0001", "0.01"}


@pytest.mark.parametrize("field", ["id", "symbol", "class", "exchange", "status", "tradable"])
def test_a_row_without_a_required_field_is_quarantined(field):
    assert rejection(without(equity(), field)) == f"{field} is missing"
    assert field in rejection(equity(**{field: None}))


def test_missing_optional_fields_take_their_defaults():
    record = accepted({key: equity()[key] for key in ("id", "symbol", "class", "exchange", "status", "tradable")})
    assert record["name"] == "" and record["attributes"] == []
    assert not any(record[flag] for flag in ("marginable", "shortable", "easy_to_borrow", "fractionable"))
    assert record["maintenance_margin_requirement"] is None and record["price_increment"] is None


@pytest.mark.parametrize("alpaca_id", ["not-a-uuid", "' OR 1=1 --", "b0b6dd9d8b9b48a9ba46b9d54906e415x",
                                       "b0b6dd9d-8b9b-48a9-ba46-b9d54906e41\u0665"])
def test_an_id_that_is_no_uuid_is_quarantined(alpaca_id):
    assert rejection(equity(id=alpaca_id)).startswith(f"id {alpaca_id!r} is not a UUID")


def test_an_id_that_is_not_a_string_is_quarantined():
    assert rejection(equity(id={"$ne": None})) == "id must be a string, got dict"


def test_an_uppercase_id_is_stored_lowercase():
    assert (accepted(equity(id="B0B6DD9D-8B9B-48A9-BA46-B9D54906E415"))["alpaca_id"]
            == "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415")


@pytest.mark.parametrize("symbol", ["BRK.B", "F.PRB", "FLYX.WS", "GRAF.U", "FACTW", "PJWEF", "A", "ABCDEFG.ABCD",
                                    "BTC/USD", "SUSHI/USDT", "PEPE/USD", "1INCH/USD"])
def test_real_symbol_forms_are_valid(symbol):
    assert accepted(equity(symbol=symbol))["symbol"] == symbol


@pytest.mark.parametrize("symbol", [
    "aapl", "BRK.b", "AA PL", "AB$C", "ASSET#X", "../etc/passwd", "\u0410APL", "AAPL\u200b", "AAPL\n", "' OR '1'='1",
    '{"$gt": ""}', "1ABC", "ABCDEFGH", "BRK.BBBBB", "BRK.", ".B", "BTC/USD/EUR", "B/USD", "BTC/", "", "A" * 22,
])
def test_a_symbol_outside_the_listed_forms_is_quarantined(symbol):
    reason = rejection(equity(symbol=symbol))
    assert reason.startswith(f"symbol {symbol!r} ")


def test_a_symbol_reason_names_the_field_and_the_problem():
    assert rejection(equity(symbol="AB$C")) == "symbol 'AB$C' has characters outside A-Z 0-9 . /"
    assert rejection(equity(symbol="BRK.BBBBB")) == ("symbol 'BRK.BBBBB' is neither an equity symbol like BRK.B"
                                                     " nor a crypto pair like BTC/USD")


def test_a_symbol_that_is_not_a_string_is_quarantined():
    assert rejection(equity(symbol=["AAPL"])) == "symbol must be a string, got list"


def test_symbol_form_and_asset_class_are_judged_apart():
    assert accepted(crypto(symbol="BTCUSD"))["asset_class"] == "crypto"
    assert accepted(equity(symbol="BTC/USD"))["asset_class"] == "us_equity"


def test_a_reason_echoes_at_most_64_characters_of_a_bad_value_escaped():
    reason = rejection(equity(symbol="\x00" + "A" * 1_000_000))
    assert reason == "symbol '\\x00" + "A" * 63 + "'... is longer than 21 characters"


def test_a_quarantined_row_keeps_its_raw_symbol_and_id_clipped():
    q = validate_assets([equity(symbol="a" * 100, id="x" * 100), 7]).quarantined
    assert q[0] == Quarantined(0, "a" * 64, "x" * 64, q[0].reason)
    assert (q[1].row, q[1].symbol, q[1].alpaca_id) == (1, None, None)


@pytest.mark.parametrize("status", ["ACTIVE", "delisted", "", "active ", "' OR 1=1"])
def test_a_status_other_than_active_or_inactive_is_quarantined(status):
    assert rejection(equity(status=status)) == f"status {status!r} is neither 'active' nor 'inactive'"


def test_unknown_exchange_class_and_attribute_are_kept_and_counted():
    raw = [equity(symbol=f"NEW{n}", exchange="NEWX", attributes=["foo"]) for n in range(3)]
    raw.append(equity(symbol="BOND", **{"class": "us_bond"}))
    result = validate_assets(raw)
    assert len(result.valid) == 4 and result.quarantined == []
    assert result.warnings == {"unknown_exchange:NEWX": 3, "unknown_attribute:foo": 3, "unknown_class:us_bond": 1}


@pytest.mark.parametrize("field", ["exchange", "class"])
@pytest.mark.parametrize("value", [5, "", ["NYSE"], "X" * 65, "NY\tSE"])
def test_an_exchange_or_class_that_is_not_a_short_printable_string_is_quarantined(field, value):
    assert rejection(equity(**{field: value})).startswith(f"{field} ")


@pytest.mark.parametrize("flag", ["tradable", "marginable", "shortable", "easy_to_borrow", "fractionable"])
@pytest.mark.parametrize("value", ["true", 1, 0, "false", [True]])
def test_a_flag_that_is_not_a_real_bool_is_quarantined(flag, value):
    assert rejection(equity(**{flag: value})).startswith(f"{flag} must be true or false, got ")


def test_a_null_tradable_is_quarantined_but_a_null_optional_flag_is_false():
    assert rejection(equity(tradable=None)) == "tradable is missing"
    assert accepted(equity(marginable=None))["marginable"] is False


def test_names_are_trimmed_with_whitespace_runs_collapsed_without_a_warning():
    # Alpaca pads names with stray spaces every day: trimming them is routine, not worth a warning.
    assert kept_name("  Apple \u00a0  Inc.\u3000Common Stock ") == ("Apple Inc. Common Stock", {})


def test_a_listing_with_a_soft_hyphen_in_its_name_is_kept_with_the_hyphen_removed():
    listing = {
        "id": "4f5baf1e-0e9b-4d85-b88a-d874dc4a3c42", "class": "us_equity", "exchange": "NASDAQ", "symbol": "XYZ",
        "name": "Foo\u00adbar Inc. Common Stock", "status": "active", "tradable": True, "marginable": True,
        "maintenance_margin_requirement": 30, "margin_requirement_long": "30", "margin_requirement_short": "30",
        "shortable": True, "easy_to_borrow": True, "fractionable": True,
        "attributes": ["fractional_eh_enabled", "has_options"],
    }
    result = validate_assets([listing])
    assert result.quarantined == []
    assert (result.valid.iloc[0][["symbol", "name", "status", "tradable"]].to_list()
            == ["XYZ", "Foobar Inc. Common Stock", "active", True])
    assert result.warnings == {"name:control_or_format_characters": 1}


@pytest.mark.parametrize(("name", "stored"), [
    ("Apple\u200bInc.", "AppleInc."), ("\ufeffApple Inc.", "Apple Inc."), ("\u202eelppA", "elppA"),
    ("Apple\u2060Inc.\u00ad", "AppleInc."), ("Apple\x00Inc.", "AppleInc."), ("Apple\x7f", "Apple"),
    ("Apple\ud800Inc.", "AppleInc."), ("Apple\tInc.", "Apple Inc."), ("Apple\r\nInc.\n", "Apple Inc."),
    ("Apple \t\t  Inc.\x85 Common   Stock\x0b", "Apple Inc. Common Stock"),
])
def test_a_name_with_control_or_invisible_characters_is_kept_cleaned_with_a_warning(name, stored):
    assert kept_name(name) == (stored, {"name:control_or_format_characters": 1})


@pytest.mark.parametrize("name", ["", "   ", "\u200b", "\x00\t\n", None])
def test_an_empty_name_is_kept_with_a_warning(name):
    stored, warnings = kept_name(name)
    assert stored == "" and "name:empty" in warnings


def test_a_name_is_stored_composed_to_nfc():
    assert (kept_name("Soci\u0065\u0301t\u0065\u0301 G\u0065\u0301n\u0065\u0301rale")
            == ("Soci\u00e9t\u00e9 G\u00e9n\u00e9rale", {"name:not_nfc": 1}))


def test_a_name_is_data_so_injection_text_in_it_is_kept_verbatim():
    name = "Robert'); DROP TABLE assets;-- {\"$ne\": null} ../etc/passwd"
    assert kept_name(name) == (name, {})


def test_a_one_megabyte_name_is_kept_cut_to_256_characters_with_a_warning():
    assert kept_name("A" * 1_048_576) == ("A" * 256, {"name:truncated": 1})
    assert kept_name("abc " * 100) == (("abc " * 64)[:-1], {"name:truncated": 1})  # no trailing space after the cut


@pytest.mark.parametrize("name", [42, 1.5, True, ["Apple"], {"en": "Apple"}, float("nan")])
def test_a_name_that_is_not_a_string_is_kept_empty_with_a_warning(name):
    assert kept_name(name) == ("", {"name:not_a_string": 1, "name:empty": 1})


def test_a_bad_symbol_or_id_is_quarantined_whatever_the_name_and_its_name_is_not_counted():
    result = validate_assets([equity(symbol="AA PL", name="Foo\u00adbar"),
                              equity(symbol="MSFT", id="not-a-uuid", name="\x00"),
                              equity(symbol="GOOG", name="Alpha\u200bbet")])
    assert list(result.valid.symbol) == ["GOOG"]
    assert [q.reason for q in result.quarantined] == ["symbol 'AA PL' has characters outside A-Z 0-9 . /",
                                                      "id 'not-a-uuid' is not a UUID"]
    assert result.warnings == {"name:control_or_format_characters": 1}


def test_a_cleaned_name_is_stored_so_the_next_day_plans_no_change():
    raw = [equity(symbol="XYZ", name="Foo\u00adbar\u200b  Inc.\tCommon Stock")]
    first = plan_sync(validate_assets(raw).valid.to_dict("records"), [], {},
                      Observation("2024-06-03T04:00:00Z", "2024-06-03"))
    assert [item["name"] for item, _ in first.companies] == ["Foobar Inc. Common Stock"]
    again = plan_sync(validate_assets(raw).valid.to_dict("records"), [item for item, _ in first.companies],
                      {v["symbol"]: v["view_of"] for v in first.views},
                      Observation("2024-06-04T04:00:00Z", "2024-06-04"))
    assert again.companies == [] and again.views == [] and again.counts["unchanged"] == 1


def stored_names(names: list[object]) -> tuple[list[str], dict[str, int]]:
    """The stored names of sound equities with these names, which must all be kept, and the warnings they gave."""
    result = validate_assets([equity(symbol=f"N{n}", name=name) for n, name in enumerate(names)])
    assert result.quarantined == [] and len(result.valid) == len(names), result.quarantined
    return list(result.valid.name), result.warnings


# Any text at all, lone surrogates included: every row is kept, with its name in the stored form.
@settings(PROPERTY_SETTINGS, max_examples=25)
@given(st.lists(st.text(st.characters(exclude_categories=()), max_size=300) | st.sampled_from(HOSTILE_STRINGS),
                min_size=1, max_size=30))
def test_any_text_name_is_kept_in_a_stored_form_that_normalises_to_itself(names):
    stored, _ = stored_names(names)
    for name in stored:
        assert len(name) <= 256 and name.isprintable() and unicodedata.is_normalized("NFC", name)
        assert name == " ".join(name.split())
        name.encode("utf-8")  # raises for a lone surrogate, which DynamoDB's UTF-8 could not store
    again, warnings = stored_names(stored)
    assert again == stored and set(warnings) <= {"name:empty"}


@pytest.mark.parametrize(("value", "canonical"), [
    (30, "30"), (0.5, "0.5"), ("0.000000002", "0.000000002"), ("30.0", "30"), ("030", "30"), (1e-9, "0.000000001"),
    (0, "0"), ("0.000", "0"), (0.1, "0.1"), (12.5, "12.5"),
])
def test_decimals_are_stored_as_canonical_strings(value, canonical):
    assert accepted(crypto(min_order_size=value))["min_order_size"] == canonical


@pytest.mark.parametrize("value", [
    float("nan"), float("inf"), float("-inf"), 1e400, "1e400", "NaN", "Infinity", -5, -0.5, "-5", "abc", "30 ", "3_0",
    "", "\u0663\u0660", 10**40, "1" * 19, "0." + "0" * 18 + "1",
])
def test_a_decimal_that_is_not_a_plain_non_negative_number_is_quarantined(value):
    assert rejection(equity(margin_requirement_long=value)).startswith("margin_requirement_long ")


@pytest.mark.parametrize("value", [True, False, [30], {"$gt": 0}])
def test_a_decimal_of_the_wrong_type_is_quarantined(value):
    assert rejection(equity(price_increment=value)) == ("price_increment must be a number or a numeric string,"
                                                        f" got {type(value).__name__}")


def test_an_overflowing_json_number_is_quarantined():
    row = json.loads(json.dumps(equity()).replace('"maintenance_margin_requirement": 30',
                                                  '"maintenance_margin_requirement": 1e400'))
    assert rejection(row) == ("maintenance_margin_requirement 'Infinity' is not a non-negative decimal number"
                              " with at most 18 digits before and after the point")


def test_attributes_are_sorted_and_deduplicated():
    assert accepted(equity(attributes=["has_options", "ipo", "has_options"]))["attributes"] == ["has_options", "ipo"]


@pytest.mark.parametrize("attributes", ["has_options", {"has_options": True}, ["ipo", 3], [["ipo"]], ["x" * 65],
                                        ["ipo\x00"], [""], [f"a{n}" for n in range(33)]])
def test_attributes_that_are_not_a_short_list_of_short_printable_strings_are_quarantined(attributes):
    assert rejection(equity(attributes=attributes)).startswith("attributes ")


@pytest.mark.parametrize("row", [None, 1, "AAPL", ["AAPL"], 1.5, True])
def test_a_row_that_is_not_an_object_is_quarantined(row):
    assert rejection(row) == f"row must be an object, got {type(row).__name__}"


def test_an_input_that_is_not_a_list_gives_no_valid_row():
    result = validate_assets({"code": 40010001, "message": "forbidden"})
    assert result.valid.empty and [q.row for q in result.quarantined] == [0]
    AssetSchema.validate(result.valid)


@pytest.mark.parametrize("active_first", [True, False])
def test_a_symbol_of_one_listed_and_one_delisted_company_keeps_both_each_under_its_id(active_first):
    """A reused ticker: Alpaca keeps the earlier company, delisted, under its last symbol."""
    listings = [equity(status="active"), equity(status="inactive", tradable=False)]
    raw = listings if active_first else listings[::-1]
    result = validate_assets(raw)
    assert sorted(result.valid.status) == ["active", "inactive"] and result.quarantined == []
    AssetSchema.validate(result.valid)


def test_a_symbol_two_listed_companies_claim_is_quarantined_twice():
    result = validate_assets([equity(), equity(), equity(symbol="MSFT")])
    assert list(result.valid.symbol) == ["MSFT"]
    assert [q.row for q in result.quarantined] == [0, 1]
    assert all("duplicate symbol 'AAPL'" in q.reason and "listed (active and tradable) 2 times" in q.reason
               for q in result.quarantined)


def test_a_symbol_of_two_delisted_companies_keeps_both():
    result = validate_assets([equity(status="inactive", tradable=False), equity(status="inactive", tradable=False)])
    assert len(result.valid) == 2 and result.quarantined == []


def test_the_schema_refuses_two_listed_companies_under_one_symbol():
    frame = validate_assets([equity(), equity(symbol="MSFT")]).valid
    frame.loc[1, "symbol"] = "AAPL"
    with pytest.raises(pa.errors.SchemaErrors, match="lists one symbol for two listed companies"):
        AssetSchema.validate(frame, lazy=True)


def test_an_id_listed_with_two_symbols_is_quarantined_twice():
    shared = str(uuid.uuid4())
    result = validate_assets([equity(id=shared, symbol="AAPL"), equity(id=shared, symbol="APPL"),
                              equity(symbol="MSFT")])
    assert list(result.valid.symbol) == ["MSFT"]
    assert [q.row for q in result.quarantined] == [0, 1]
    assert all(q.reason.startswith(f"duplicate id '{shared}'") for q in result.quarantined)


def test_an_exact_duplicate_row_is_kept_once():
    row = equity()
    result = validate_assets([row, dict(row), equity(symbol="MSFT"), dict(row)])
    assert list(result.valid.symbol) == ["AAPL", "MSFT"]
    assert [q.row for q in result.quarantined] == [1, 3]
    assert all(q.reason.startswith("duplicate of an earlier row") for q in result.quarantined)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30) | st.sampled_from(HOSTILE_STRINGS),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(sorted(crypto()) + ["unexpected"])


@st.composite
def rows_with_one_field_replaced(draw) -> dict:
    row = draw(st.sampled_from([equity(), crypto(), equity(symbol="BRK.B", exchange="NYSE")]))
    field = draw(field_names)
    if draw(st.booleans()):
        return without(row, field)
    return row | {field: draw(json_values)}


@PROPERTY_SETTINGS
@given(st.lists(json_values, max_size=8))
def test_any_list_of_json_values_is_split_without_raising(raw):
    assert_every_row_accounted_for(raw, validate_assets(raw))


@PROPERTY_SETTINGS
@given(st.lists(rows_with_one_field_replaced(), max_size=6))
def test_valid_rows_with_one_hostile_field_are_split_without_raising(raw):
    assert_every_row_accounted_for(raw, validate_assets(raw))


# Four listings in up to eight places: a hundred examples already cover every way to repeat them.
@settings(PROPERTY_SETTINGS, max_examples=100)
@given(st.lists(st.sampled_from([equity(), equity(status="inactive"), equity(symbol="MSFT"), crypto()]), max_size=8))
def test_repeated_listings_never_leave_an_id_or_a_listed_symbol_twice(raw):
    result = validate_assets(raw)
    assert_every_row_accounted_for(raw, result)
    listed = result.valid[result.valid.status.eq("active") & result.valid.tradable]
    assert listed.symbol.is_unique and result.valid.alpaca_id.is_unique
