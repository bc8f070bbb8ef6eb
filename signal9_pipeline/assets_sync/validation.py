"""Validation of Alpaca's asset list before the sync writes any of it.

`GET /v2/assets` is the only source of the symbols that become DynamoDB keys (`ASSET#{symbol}`)
and of the listings the sync activates and deactivates, so one malformed, hostile or duplicated
row must neither reach a key nor stop the sync of the ~32,000 others. `validate_assets` splits
the raw list into a frame that conforms to `AssetSchema` and quarantined rows with a reason each,
and counts values that are well-formed but new to us (an exchange Alpaca adds) as warnings.

Only what identifies or trades an asset can quarantine it: its id and symbol (the keys), class,
exchange, status, flags, trading decimals and attributes. The name is free text that nothing keys
or trades on, and real listings carry invisible characters in it (a soft hyphen, U+00AD), so a
name never costs an asset: it is normalised to the form that is stored and compared for changes
(see `_normalised_name`), and whatever had to be done to it is counted as a `name:*` warning:
`name:not_a_string` (stored empty), `name:control_or_format_characters` (removed, or made a space
if they were whitespace), `name:not_nfc` (recomposed), `name:truncated` (to 256 characters) and
`name:empty` (nothing is left). Spaces Alpaca pads names with are trimmed without a warning.
"""

from __future__ import annotations

import collections
import functools
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

KNOWN_EXCHANGES = frozenset({"NASDAQ", "NYSE", "ARCA", "BATS", "AMEX", "NYSEARCA", "OTC", "CRYPTO"})
KNOWN_CLASSES = frozenset({"us_equity", "crypto", "us_option"})
KNOWN_ATTRIBUTES = frozenset(
    {"fractional_eh_enabled", "has_options", "ptp_no_exception", "ptp_with_exception", "ipo", "options_late_close"}
)

# Explicit ASCII ranges throughout: `\d` and `\w` would also match other scripts' digits and letters.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_KEY_SAFE_CHARACTERS = re.compile(r"[A-Z0-9./]*")
# An equity root with an optional class, preferred, warrant or unit suffix (BRK.B, F.PRB, FLYX.WS), or a crypto pair.
_LISTED_SYMBOL = re.compile(r"[A-Z][A-Z0-9]{0,6}(?:\.[A-Z]{1,4})?|[A-Z0-9]{2,10}/[A-Z0-9]{2,10}")
# At most 36 significant digits, so that every accepted value fits a DynamoDB number (38).
_CANONICAL_DECIMAL = re.compile(r"(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{0,17}[1-9])?")
_PLAIN_DECIMAL = re.compile(r"[0-9]{1,40}(?:\.[0-9]{1,40})?")

_ECHO_CHARS = 64
_MAX_SYMBOL_CHARS = 21
# Longer names are cut to this (with a warning): at most 1 KB of UTF-8, so an item stays far below DynamoDB's 400 KB.
_MAX_NAME_CHARS = 256
_MAX_CODE_CHARS = 64
_MAX_ATTRIBUTES = 32

_TEXT_FIELDS = {"id": "alpaca_id", "symbol": "symbol", "class": "asset_class", "exchange": "exchange",
                "status": "status"}
_REQUIRED_FLAG = "tradable"
_FLAGS = (_REQUIRED_FLAG, "marginable", "shortable", "easy_to_borrow", "fractionable")
_DECIMALS = (
    "maintenance_margin_requirement", "margin_requirement_long", "margin_requirement_short",
    "min_order_size", "min_trade_increment", "price_increment",
)
_FIELD_OF_COLUMN = {column: field for field, column in _TEXT_FIELDS.items()}


class AssetSchema(pa.DataFrameModel):
    """One accepted Alpaca asset per row: what the sync may write to DynamoDB."""

    alpaca_id: Series[str] = pa.Field(unique=True)
    symbol: Series[str]
    name: Series[str]
    exchange: Series[str]
    asset_class: Series[str]
    status: Series[str]
    tradable: Series[bool]
    marginable: Series[bool]
    shortable: Series[bool]
    easy_to_borrow: Series[bool]
    fractionable: Series[bool]
    maintenance_margin_requirement: Series[str] = pa.Field(nullable=True)
    margin_requirement_long: Series[str] = pa.Field(nullable=True)
    margin_requirement_short: Series[str] = pa.Field(nullable=True)
    min_order_size: Series[str] = pa.Field(nullable=True)
    min_trade_increment: Series[str] = pa.Field(nullable=True)
    price_increment: Series[str] = pa.Field(nullable=True)
    attributes: Series[object]

    class Config:
        strict = True

    # Per column, the first failing check becomes the reason, so the checks go from coarse to fine.
    @pa.check("alpaca_id", error="is not a UUID")
    def id_is_canonical_uuid(cls, ids: Series[str]) -> pd.Series[bool]:
        return ids.str.fullmatch(_CANONICAL_UUID)

    @pa.check("symbol", error=f"is longer than {_MAX_SYMBOL_CHARS} characters")
    def symbol_is_short(cls, symbols: Series[str]) -> pd.Series[bool]:
        return symbols.str.len() <= _MAX_SYMBOL_CHARS

    @pa.check("symbol", error="has characters outside A-Z 0-9 . /")
    def symbol_has_key_safe_characters(cls, symbols: Series[str]) -> pd.Series[bool]:
        return symbols.str.fullmatch(_KEY_SAFE_CHARACTERS)

    @pa.check("symbol", error="is neither an equity symbol like BRK.B nor a crypto pair like BTC/USD")
    def symbol_has_a_listed_form(cls, symbols: Series[str]) -> pd.Series[bool]:
        return symbols.str.fullmatch(_LISTED_SYMBOL)

    # `_normalised_name` makes every name pass these two; they state the stored form for the
    # blocking validated_rows_conform check (the validation's postcondition), so they never quarantine a row.
    @pa.check("name", error=f"is longer than {_MAX_NAME_CHARS} characters")
    def name_is_short(cls, names: Series[str]) -> pd.Series[bool]:
        return names.str.len() <= _MAX_NAME_CHARS

    @pa.check("name", element_wise=True, error="is not normalised (printable, NFC, single spaces, trimmed)")
    def name_is_normalised(cls, name: str) -> bool:
        return name.isprintable() and unicodedata.is_normalized("NFC", name) and name == " ".join(name.split())

    @pa.check("exchange", "asset_class", error=f"is empty or longer than {_MAX_CODE_CHARS} characters")
    def code_is_short(cls, codes: Series[str]) -> pd.Series[bool]:
        return codes.str.len().between(1, _MAX_CODE_CHARS)

    @pa.check("exchange", "asset_class", element_wise=True, error="has control or other non-printable characters")
    def code_is_printable(cls, code: str) -> bool:
        return code.isprintable()

    @pa.check("status", error="is neither 'active' nor 'inactive'")
    def status_is_known(cls, statuses: Series[str]) -> pd.Series[bool]:
        return statuses.isin(("active", "inactive"))

    @pa.check(*_DECIMALS,
              error="is not a non-negative decimal number with at most 18 digits before and after the point")
    def decimal_is_canonical(cls, numbers: Series[str]) -> pd.Series[bool]:
        return numbers.str.fullmatch(_CANONICAL_DECIMAL)

    @pa.check("attributes", element_wise=True, error=f"has more than {_MAX_ATTRIBUTES} items")
    def attributes_are_few(cls, attributes: list) -> bool:
        return len(attributes) <= _MAX_ATTRIBUTES

    @pa.check("attributes", element_wise=True,
              error=f"has an item that is empty, longer than {_MAX_CODE_CHARS} characters or not printable")
    def attributes_are_short_printable(cls, attributes: list) -> bool:
        return all(0 < len(item) <= _MAX_CODE_CHARS and item.isprintable() for item in attributes)

    @pa.check("attributes", element_wise=True, error="is not sorted and free of duplicates")
    def attributes_are_sorted_sets(cls, attributes: list) -> bool:
        return attributes == sorted(set(attributes))

    @pa.dataframe_check(error="lists one symbol for two listed companies")
    def listed_symbols_are_unique(cls, frame: pd.DataFrame) -> pd.Series:
        listed = _listed(frame)
        return ~(listed & frame.symbol.where(listed).duplicated(keep=False))


@dataclass(frozen=True)
class Quarantined:
    """An input row the sync must not write, and why."""

    row: int
    symbol: str | None
    alpaca_id: str | None
    reason: str


@dataclass(frozen=True)
class ValidationResult:
    """The accepted assets as an `AssetSchema` frame, the rejected rows, and counts of new-but-valid values."""

    valid: pd.DataFrame
    quarantined: list[Quarantined]
    warnings: dict[str, int]


_COLUMNS = list(AssetSchema.to_schema().columns)


def validate_assets(raw: list) -> ValidationResult:
    """Split Alpaca's `/v2/assets` answer into valid rows and quarantined ones; never raises.

    Every input row ends in exactly one of `valid` and `quarantined`. An input that is not a list
    at all (an error body, say) gives no valid row and one quarantined entry for row 0.
    """
    if not isinstance(raw, list):
        reason = f"the asset list must be a JSON array, got {type(raw).__name__}"
        return ValidationResult(_frame({}), [Quarantined(0, None, None, reason)], {})
    records: dict[int, dict[str, object]] = {}
    reasons: dict[int, str] = {}
    name_warnings: dict[int, list[str]] = {}
    for row, asset in enumerate(raw):
        record, problems, name_warnings[row] = _record(asset)
        if problems:
            reasons[row] = "; ".join(problems)
        else:
            records[row] = record
    frame = _frame(records)
    for judge in (_duplicate_reasons, _schema_reasons):
        rejected = judge(frame)
        reasons |= rejected
        frame = frame.drop(index=list(rejected))
    kept_name_warnings = [warning for row in frame.index for warning in name_warnings[row]]
    valid = frame.reset_index(drop=True)
    quarantined = [_quarantined(raw[row], row, reasons[row]) for row in sorted(reasons)]
    return ValidationResult(valid, quarantined, _warnings(valid, kept_name_warnings))


def _record(asset: object) -> tuple[dict[str, object], list[str], list[str]]:
    """The frame record of one raw asset, its type-level problems (which pandera cannot judge row by row)
    and the warnings about its name."""
    if not isinstance(asset, dict):
        return {}, [f"row must be an object, got {type(asset).__name__}"], []
    problems: list[str] = []
    name_warnings: list[str] = []
    record = {column: _required_text(asset, field, problems) for field, column in _TEXT_FIELDS.items()}
    record["alpaca_id"] = _canonical_uuid(record["alpaca_id"])
    record["name"] = _normalised_name(asset.get("name"), name_warnings)
    record |= {flag: _flag(asset.get(flag), flag, problems) for flag in _FLAGS}
    record |= {field: _decimal(asset.get(field), field, problems) for field in _DECIMALS}
    record["attributes"] = _attributes(asset.get("attributes"), problems)
    return record, problems, name_warnings


def _required_text(asset: dict, field: str, problems: list[str]) -> object:
    value = asset.get(field)
    if value is None:
        problems.append(f"{field} is missing")
    elif not isinstance(value, str):
        problems.append(f"{field} must be a string, got {_kind(value)}")
    return value


def _canonical_uuid(value: object) -> object:
    """A UUID spelt in uppercase in lowercase; anything else unchanged, so that a reason echoes it as sent."""
    # ASCII only: some other letters lowercase to ASCII ones (the Kelvin sign to k).
    if isinstance(value, str) and value.isascii() and _CANONICAL_UUID.fullmatch(value.lower()):
        return value.lower()
    return value


def _normalised_name(value: object, warnings: list[str]) -> str:
    """The name as stored and compared for changes; what had to be done to it goes to `warnings`.

    Characters of the categories C* (controls, format characters such as U+00AD or U+200B, lone
    surrogates that UTF-8 cannot encode, private-use and unassigned ones) are removed, or made a
    space if they are whitespace (a tab, a newline); the rest is composed to NFC, its whitespace
    runs made one space and trimmed, and it is cut to `_MAX_NAME_CHARS`. The result is the same
    for the same input every day, so a listing's name does not count as a change again and again.
    """
    if not isinstance(value, str):
        if value is not None:
            warnings.append("name:not_a_string")
        value = ""
    # isprintable is False for C* and for whitespace other than " ": this spares the usual names a pass per character.
    if not value.isprintable():
        if any(unicodedata.category(character)[0] == "C" for character in value):
            warnings.append("name:control_or_format_characters")
        value = "".join(map(_visible, value))
    composed = unicodedata.normalize("NFC", value)
    if composed != value:
        warnings.append("name:not_nfc")
    name = " ".join(composed.split())
    if len(name) > _MAX_NAME_CHARS:
        warnings.append("name:truncated")
        # A cut can part a character from the marks after it; composing the rest again keeps it NFC.
        name = unicodedata.normalize("NFC", name[:_MAX_NAME_CHARS]).rstrip(" ")
    if not name:
        warnings.append("name:empty")
    return name


def _visible(character: str) -> str:
    """A space for any whitespace, nothing for other C* characters, else the character."""
    if character.isspace():
        return " "
    return "" if unicodedata.category(character)[0] == "C" else character


def _flag(value: object, flag: str, problems: list[str]) -> object:
    # Alpaca leaves out the flags that do not apply to an asset class; only `tradable` decides a sync.
    if value is None and flag != _REQUIRED_FLAG:
        return False
    if value is None:
        problems.append(f"{flag} is missing")
    elif not isinstance(value, bool):
        problems.append(f"{flag} must be true or false, got {_kind(value)}")
    return value


def _decimal(value: object, field: str, problems: list[str]) -> object:
    if value is None:
        return None
    # bool is an int subclass: True would otherwise become the margin "1".
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        problems.append(f"{field} must be a number or a numeric string, got {_kind(value)}")
        return value
    return _decimal_text(value)


def _decimal_text(value: int | float | str) -> str:
    """Canonical text of a plain decimal (30 -> "30", 0.50 -> "0.5"); other values as text the schema rejects."""
    if isinstance(value, str) and not _PLAIN_DECIMAL.fullmatch(value):
        return value
    return _canonical_decimal(value)


# Alpaca repeats a handful of values ("30", 100) across 32,000 rows; typed, so 1 and 1.0 stay apart.
# Only numbers and plain decimals of at most 81 characters get here: no huge hostile string is kept.
@functools.lru_cache(maxsize=1024, typed=True)
def _canonical_decimal(value: int | float | str) -> str:
    # repr, not the float itself: Decimal(0.1) would be the binary expansion 0.1000000000000000055...
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite():
        return str(number)
    text = format(number, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _attributes(value: object, problems: list[str]) -> object:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"attributes must be a list, got {_kind(value)}")
        return value
    strange = [_kind(item) for item in value if not isinstance(item, str)]
    if strange:
        problems.append(f"attributes must hold only strings, got {strange[0]}")
        return value
    return sorted(set(value))


def _frame(records: dict[int, dict[str, object]]) -> pd.DataFrame:
    """The records as a frame indexed by input row, with bool flags even when there are no rows."""
    frame = pd.DataFrame(list(records.values()), index=list(records), columns=_COLUMNS)
    return frame.astype(dict.fromkeys(_FLAGS, bool))


def _duplicate_reasons(frame: pd.DataFrame) -> dict[int, str]:
    """Rows to quarantine because another row lists the same asset or symbol.

    The first of several rows with one id and symbol is kept. An id with different symbols, or a symbol
    that two listed ids claim, is ambiguous, so none of those rows is kept; a symbol held by one listed
    company and by delisted ones (a reused ticker) keeps every row, each company under its own id.
    """
    repeated = frame.duplicated(["alpaca_id", "symbol"])
    reasons = {row: f"duplicate of an earlier row with id {_echo(i)} and symbol {_echo(s)}"
               for row, i, s in zip(frame.index[repeated], frame.alpaca_id[repeated], frame.symbol[repeated])}
    listings = frame[~repeated]
    by_problem = collections.defaultdict(list)
    for row, reason in [*_shared_id_reasons(listings).items(), *_shared_symbol_reasons(listings).items()]:
        by_problem[row].append(reason)
    return reasons | {row: "; ".join(problems) for row, problems in by_problem.items()}


def _shared_id_reasons(listings: pd.DataFrame) -> dict[int, str]:
    shared = listings[listings.duplicated("alpaca_id", keep=False)]
    times = shared.groupby("alpaca_id")["symbol"].transform("size")
    return {row: f"duplicate id {_echo(alpaca_id)}: listed {n} times with different symbols"
            for row, alpaca_id, n in zip(shared.index, shared.alpaca_id, times)}


def _shared_symbol_reasons(listings: pd.DataFrame) -> dict[int, str]:
    """Two listed (active, tradable) companies under one symbol: which is it? Neither row is kept.

    A symbol held by one listed company and by inactive ones is not a conflict: Alpaca keeps a company it
    delisted, under its last symbol, after the ticker passed to another (a reused ticker), each under its own id.
    """
    shared = listings[listings.duplicated("symbol", keep=False)]
    listed = _listed(shared)
    counts = listed.groupby(shared.symbol).transform("sum")
    return {row: f"duplicate symbol {_echo(symbol)}: listed (active and tradable) {n} times, under different ids"
            for row, symbol, n in zip(shared.index, shared.symbol, counts) if n > 1}


def _listed(frame: pd.DataFrame) -> pd.Series:
    return frame.status.eq("active") & frame.tradable.eq(True)


def _schema_reasons(frame: pd.DataFrame) -> dict[int, str]:
    """Rows that break `AssetSchema`, with the first failing check of each of their columns."""
    try:
        AssetSchema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases.sort_values("check_number", kind="stable", na_position="last")
        first = cases.drop_duplicates(["index", "column"])
        problems = collections.defaultdict(list)
        for row, column, check in zip(first["index"], first["column"], first["check"]):
            problems[row].append(f"{_FIELD_OF_COLUMN.get(column, column)} {_echo(frame.at[row, column])} {check}")
        return {row: "; ".join(reasons) for row, reasons in problems.items()}
    return {}


def _warnings(valid: pd.DataFrame, name_warnings: list[str]) -> dict[str, int]:
    """Counts over the kept rows: unknown codes, and what normalising their names had to do."""
    counts = collections.Counter(name_warnings)
    counts.update(f"unknown_exchange:{e}" for e in valid.exchange if e not in KNOWN_EXCHANGES)
    counts.update(f"unknown_class:{c}" for c in valid.asset_class if c not in KNOWN_CLASSES)
    counts.update(f"unknown_attribute:{a}" for attributes in valid.attributes for a in attributes
                  if a not in KNOWN_ATTRIBUTES)
    return dict(counts)


def _quarantined(asset: object, row: int, reason: str) -> Quarantined:
    fields = asset if isinstance(asset, dict) else {}
    return Quarantined(row, _clipped(fields.get("symbol")), _clipped(fields.get("id")), reason)


def _clipped(value: object) -> str | None:
    return value[:_ECHO_CHARS] if isinstance(value, str) else None


def _kind(value: object) -> str:
    """What a value of the wrong type is, echoing strings only: other values could be huge or nested."""
    return f"str {_echo(value)}" if isinstance(value, str) else type(value).__name__


def _echo(value: object) -> str:
    """At most 64 characters of a bad value, quoted with control characters escaped, for a reason."""
    if isinstance(value, list):
        return "[" + ", ".join(map(_echo, value[:3])) + (", ...]" if len(value) > 3 else "]")
    text = str(value)
    return repr(text[:_ECHO_CHARS]) + ("..." if len(text) > _ECHO_CHARS else "")
