import collections
import re
import uuid

from signal9_devstack.sandbox.universe import build_universe

REQUIRED_FIELDS = {
    "id", "class", "exchange", "symbol", "name", "status", "tradable", "marginable", "shortable", "easy_to_borrow",
    "fractionable", "maintenance_margin_requirement", "margin_requirement_long", "margin_requirement_short",
    "attributes",
}


def test_default_universe_has_the_live_apis_proportions(default_universe):
    kinds = collections.Counter((a["class"], a["status"], a["tradable"]) for a in default_universe)
    assert kinds[("us_equity", "active", True)] == 12_000
    assert 19_000 <= kinds[("us_equity", "inactive", False)] <= 21_000
    assert 50 <= kinds[("crypto", "active", True)] <= 70
    exchanges = {a["exchange"] for a in default_universe}
    assert {"NASDAQ", "NYSE", "ARCA", "BATS", "AMEX", "OTC", "CRYPTO"} <= exchanges


def test_universe_has_the_symbol_forms_naive_validators_reject(default_universe):
    symbols = {a["symbol"] for a in default_universe}
    for symbol in ("BRK.B", "BF.B", "F.PRB", "FLYX.WS", "GRAF.U", "FACTW", "FACTU", "FERAR", "FATBP",
                   "BTC/USD", "SUSHI/USDT", "ETH/BTC"):
        assert symbol in symbols
    assert any(re.fullmatch(r"[A-Z]+\.PR[A-Z]", s) for s in symbols - {"F.PRB"})
    assert any(a["name"] != a["name"].strip() or "  " in a["name"] for a in default_universe)


def test_every_asset_has_the_live_fields_and_types(default_universe):
    for asset in default_universe:
        assert REQUIRED_FIELDS <= asset.keys()
        uuid.UUID(asset["id"])
        assert isinstance(asset["margin_requirement_long"], str) and isinstance(asset["attributes"], list)
        if asset["class"] == "crypto":
            for field in ("min_order_size", "min_trade_increment", "price_increment"):
                float(asset[field])  # numeric strings
                assert isinstance(asset[field], str)
        else:
            assert "min_order_size" not in asset
    assert len({a["id"] for a in default_universe}) == len(default_universe)


def test_a_symbol_listed_twice_is_once_active_and_once_inactive(default_universe):
    by_symbol = collections.defaultdict(list)
    for asset in default_universe:
        by_symbol[asset["symbol"]].append(asset["status"])
    twice = {s: st for s, st in by_symbol.items() if len(st) > 1}
    assert twice and all(sorted(st) == ["active", "inactive"] for st in twice.values())


def test_universe_is_deterministic_per_seed(default_universe):
    assert build_universe(0) == default_universe
    assert build_universe(1) != default_universe
