"""A deterministic, realistic Alpaca asset universe for the local sandbox.

The live `/v2/assets` answer has about 12,000 active tradable assets, tens of
thousands of inactive US equities and a few dozen crypto pairs, with symbols and
names that naive validators reject (`BRK.B`, `F.PRB`, `FLYX.WS`, `BTC/USD`,
names padded with spaces). The sandbox reproduces that variety from a seed so
that tests and benchmarks see the same universe on every machine.
"""

from __future__ import annotations

import random
import string
import uuid
from typing import Any

ACTIVE_TRADABLE_EQUITIES = 12_000
ACTIVE_NON_TRADABLE_EQUITIES = 150
INACTIVE_EQUITIES = 20_000
# Alpaca has listed a symbol twice, once active and once inactive.
DUPLICATE_INACTIVE_SYMBOLS = 5

# Real listings whose symbol forms break naive validators; always present.
FIXED_EQUITIES = [
    ("AAPL", "NASDAQ", "Apple Inc. Common Stock"),
    ("MSFT", "NASDAQ", "Microsoft Corporation Common Stock"),
    ("SPY", "ARCA", "SPDR S&P 500 ETF Trust"),
    ("BRK.B", "NYSE", "Berkshire Hathaway Inc. Class B"),
    ("BF.B", "NYSE", "Brown-Forman Corporation Class B Common Stock"),
    ("F.PRB", "NYSE", "Ford Motor Company 6.20% Notes due June 1, 2059"),
    ("FLYX.WS", "NYSE", "flyExclusive, Inc. Warrants"),
    ("GRAF.U", "NYSE", "Graf Global Corp. Units"),
    ("FACTW", "NASDAQ", "FACT II Acquisition Corp. Warrants"),
    ("FACTU", "NASDAQ", "FACT II Acquisition Corp. Units"),
    ("FERAR", "NASDAQ", "Fifth Era Acquisition Corp I Rights"),
    ("FATBP", "NASDAQ", "FAT Brands Inc. 8.25% Series B Cumulative Preferred Stock"),
    ("GLD", "NYSEARCA", "SPDR Gold Shares"),
]

EXCHANGE_WEIGHTS = [
    ("NASDAQ", 40),
    ("NYSE", 22),
    ("ARCA", 14),
    ("BATS", 6),
    ("AMEX", 3),
    ("OTC", 14),
    ("NYSEARCA", 1),
]

CRYPTO_BASES = [
    ("AAVE", "Aave"), ("AVAX", "Avalanche"), ("BAT", "Basic Attention Token"), ("BCH", "Bitcoin Cash"),
    ("BTC", "Bitcoin"), ("CRV", "Curve"), ("DOGE", "Dogecoin"), ("DOT", "Polkadot"), ("ETH", "Ethereum"),
    ("GRT", "The Graph"), ("LINK", "Chainlink"), ("LTC", "Litecoin"), ("MKR", "Maker"), ("SHIB", "Shiba Inu"),
    ("SOL", "Solana"), ("SUSHI", "SushiSwap"), ("UNI", "Uniswap"), ("XTZ", "Tezos"), ("YFI", "yearn.finance"),
    ("PEPE", "Pepe"), ("TRUMP", "Official Trump"),
]
CRYPTO_QUOTES = [("USD", "US Dollar"), ("USDT", "Tether"), ("USDC", "USD Coin"), ("BTC", "Bitcoin")]
CRYPTO_PAIRS = 62

NAME_WORDS = (
    "Acme Allied American Apex Atlas Bay Blue Bright Capital Cedar Summit Clear Coastal Core Crest Delta "
    "Eagle Echo First Frontier Global Golden Granite Harbor Horizon Iron Keystone Liberty Lunar Maple "
    "Meridian Metro National North Nova Oak Omega Pacific Peak Pine Pioneer Prime Quantum Red River Rock "
    "Sierra Silver Solar Star Sterling Stone Sun Titan Trinity United Valley Vector Vista West Zenith"
).split()
NAME_KINDS = (
    "Therapeutics Holdings Bancorp Energy Technologies Pharmaceuticals Industries Systems Financial "
    "Minerals Semiconductor Realty Biosciences Networks Logistics Brands Resources Media Acquisition"
).split()
ATTRIBUTES = ["fractional_eh_enabled", "has_options", "ptp_no_exception", "ptp_with_exception", "ipo",
              "options_late_close"]


def build_universe(seed: int = 0) -> list[dict[str, Any]]:
    """The default universe for `seed`: the same list, in the same order, every time."""
    rng = random.Random(seed)
    taken: set[str] = set()
    assets: list[dict[str, Any]] = []
    for symbol, exchange, name in FIXED_EQUITIES:
        taken.add(symbol)
        assets.append(_equity(rng, symbol, exchange, name, status="active", tradable=True))
    while len(assets) < ACTIVE_TRADABLE_EQUITIES:
        assets.append(_random_equity(rng, taken, status="active", tradable=True))
    for _ in range(ACTIVE_NON_TRADABLE_EQUITIES):
        assets.append(_random_equity(rng, taken, status="active", tradable=False))
    for _ in range(INACTIVE_EQUITIES - DUPLICATE_INACTIVE_SYMBOLS):
        assets.append(_random_equity(rng, taken, status="inactive", tradable=False))
    for listed in rng.sample(assets[len(FIXED_EQUITIES) : ACTIVE_TRADABLE_EQUITIES], DUPLICATE_INACTIVE_SYMBOLS):
        assets.append(_equity(rng, listed["symbol"], listed["exchange"], listed["name"], status="inactive",
                              tradable=False))
    assets.extend(_crypto_pairs(rng))
    rng.shuffle(assets)
    return assets


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _random_equity(rng: random.Random, taken: set[str], *, status: str, tradable: bool) -> dict[str, Any]:
    exchange = rng.choices([e for e, _ in EXCHANGE_WEIGHTS], weights=[w for _, w in EXCHANGE_WEIGHTS])[0]
    while True:
        symbol, kind = _symbol_for(rng, exchange)
        if symbol not in taken:
            taken.add(symbol)
            break
    return _equity(rng, symbol, exchange, _name(rng, kind), status=status, tradable=tradable)


def _symbol_for(rng: random.Random, exchange: str) -> tuple[str, str]:
    letters = string.ascii_uppercase
    if exchange == "OTC":
        return "".join(rng.choices(letters, k=4)) + rng.choice("FY"), "Common Stock"
    if exchange == "NASDAQ":
        root = "".join(rng.choices(letters, k=4))
        form = rng.random()
        if form < 0.06:
            return root + "W", "Warrants"
        if form < 0.10:
            return root + "U", "Units"
        if form < 0.12:
            return root + "R", "Rights"
        if form < 0.14:
            return root + "P", "Preferred Stock"
        return root if rng.random() < 0.8 else root[:3], "Common Stock"
    root = "".join(rng.choices(letters, k=rng.choice([1, 2, 3, 3, 4])))
    form = rng.random()
    if exchange == "NYSE" and form < 0.05:
        return f"{root}.PR{rng.choice('ABCDEFGH')}", "Preferred Stock"
    if exchange == "NYSE" and form < 0.08:
        return f"{root}.WS", "Warrants"
    if exchange == "NYSE" and form < 0.10:
        return f"{root}.U", "Units"
    if form < 0.12:
        return f"{root}.{rng.choice('AB')}", "Class " + rng.choice("AB")
    return root, "ETF" if exchange in ("ARCA", "BATS", "NYSEARCA") and form < 0.7 else "Common Stock"


def _name(rng: random.Random, kind: str) -> str:
    name = (f"{rng.choice(NAME_WORDS)} {rng.choice(NAME_KINDS)} "
            f"{rng.choice(['Inc.', 'Corp.', 'Ltd.', 'Trust', 'Group'])} {kind}")
    stray = rng.random()
    if stray < 0.02:
        return f"  {name} "
    if stray < 0.04:
        return name.replace(" ", "  ", 1)
    return name


def _equity(rng: random.Random, symbol: str, exchange: str, name: str, *, status: str,
            tradable: bool) -> dict[str, Any]:
    marginable = tradable and exchange != "OTC" and rng.random() < 0.85
    shortable = marginable and rng.random() < 0.9
    margin = rng.choice([30, 30, 30, 50, 100]) if marginable else 100
    attributes = sorted(rng.sample(ATTRIBUTES, k=rng.choice([0, 0, 1, 1, 2]))) if tradable else []
    return {
        "id": _uuid(rng),
        "class": "us_equity",
        "exchange": exchange,
        "symbol": symbol,
        "name": name,
        "status": status,
        "tradable": tradable,
        "marginable": marginable,
        "maintenance_margin_requirement": margin,
        "margin_requirement_long": str(margin),
        "margin_requirement_short": str(margin),
        "shortable": shortable,
        "easy_to_borrow": shortable and rng.random() < 0.8,
        "fractionable": marginable and rng.random() < 0.7,
        "attributes": attributes,
    }


def _crypto_pairs(rng: random.Random) -> list[dict[str, Any]]:
    pairs = [(b, bn, q, qn) for b, bn in CRYPTO_BASES for q, qn in CRYPTO_QUOTES if b != q]
    pairs.sort(key=lambda p: (p[2] != "USD", p[2] != "USDT", p[0]))  # every USD pair first, then USDT, ...
    assets = []
    for base, base_name, quote, quote_name in pairs[:CRYPTO_PAIRS]:
        assets.append({
            "id": _uuid(rng),
            "class": "crypto",
            "exchange": "CRYPTO",
            "symbol": f"{base}/{quote}",
            "name": f"{base_name} / {quote_name}",
            "status": "active",
            "tradable": True,
            "marginable": False,
            "maintenance_margin_requirement": 100,
            "margin_requirement_long": "100",
            "margin_requirement_short": "100",
            "shortable": False,
            "easy_to_borrow": False,
            "fractionable": True,
            "attributes": [],
            "min_order_size": rng.choice(["0.000000002", "0.0001", "0.01", "1"]),
            "min_trade_increment": rng.choice(["0.000000001", "0.0001", "0.01"]),
            "price_increment": rng.choice(["0.000000001", "0.00001", "0.001", "1"]),
        })
    return assets
