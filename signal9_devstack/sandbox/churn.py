"""Day-to-day changes of the sandbox's universe: listings, delistings, reactivations, renames.

Tests, benchmarks and the soak use it to simulate what Alpaca's list does
between two daily syncs, and to know exactly which changes a sync must find.
"""

from __future__ import annotations

import copy
import random
import string
import uuid
from dataclasses import dataclass, field


@dataclass
class Churn:
    universe: list[dict]
    listed: list[str] = field(default_factory=list)
    delisted: list[str] = field(default_factory=list)
    reactivated: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # old symbol -> new symbol


def is_listed(asset: dict) -> bool:
    return asset.get("status") == "active" and asset.get("tradable") is True


def churn(universe: list[dict], rng: random.Random, *, listings: int = 0, delistings: int = 0,
          reactivations: int = 0, renames: int = 0, reactivate_from: list[str] | None = None) -> Churn:
    """A copy of `universe` with the given numbers of each change; delistings alternate removal and status change.

    Reactivated symbols are taken from `reactivate_from` (symbols the table holds as inactive), which must
    be present in the universe as inactive or absent.
    """
    assets = copy.deepcopy(universe)
    taken = {a["symbol"] for a in assets}
    equities = [a for a in assets if is_listed(a) and a["class"] == "us_equity"]
    picked = rng.sample(equities, delistings + renames)
    result = Churn(assets)
    for i, asset in enumerate(picked[:delistings]):
        result.delisted.append(asset["symbol"])
        if i % 2:
            asset.update(status="inactive", tradable=False)
        else:
            assets.remove(asset)
    for asset in picked[delistings:]:
        new_symbol = _fresh_symbol(rng, taken)
        result.renamed[asset["symbol"]] = new_symbol
        asset["symbol"] = new_symbol
    for symbol in (reactivate_from or [])[:reactivations]:
        result.reactivated.append(symbol)
        existing = next((a for a in assets if a["symbol"] == symbol), None)
        if existing is None:
            raise ValueError(f"cannot reactivate {symbol}: it is not in the universe; "
                             "pass the last universe that had it")
        existing.update(status="active", tradable=True)
    template = equities[0]
    for _ in range(listings):
        symbol = _fresh_symbol(rng, taken)
        assets.append({**copy.deepcopy(template), "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                       "symbol": symbol, "name": f"{symbol} Holdings Inc. Common Stock", "status": "active",
                       "tradable": True})
        result.listed.append(symbol)
    return result


def _fresh_symbol(rng: random.Random, taken: set[str]) -> str:
    while True:
        symbol = "".join(rng.choices(string.ascii_uppercase, k=5))
        if symbol not in taken:
            taken.add(symbol)
            return symbol
