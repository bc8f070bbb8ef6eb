"""Which pending symbols go into which pollenation run. Pure logic, no I/O.

A symbol is pending until a pollenation run marks it done. Symbols already
covered by a run in flight are left out; the rest are cut, in symbol order,
into batches. A batch's run key is its content hash plus how many runs of that
same batch have already finished, so a second tick asks for the same keys
(Dagster drops them), while a batch whose run failed gets a fresh key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

DATA_TYPES = ["company_overview", "earnings", "cash_flow", "balance_sheet", "income_statement"]


def plan_batches(pending: Iterable[str], in_flight: set[str], batch_size: int, max_batches: int) -> list[list[str]]:
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    free = sorted(set(pending) - in_flight)
    batches = [free[i : i + batch_size] for i in range(0, len(free), batch_size)]
    return batches[: max(0, max_batches)]


def batch_key(asset_ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(asset_ids)).encode()).hexdigest()[:20]


def pollenation_event_id(symbol: str, alpaca_id: str | None, pending_since: str | None) -> str:
    """Stable for one pending episode of one company under one symbol, so every retry sends the same id."""
    identity = f"pollenationNeeded|{symbol}|{alpaca_id}|{pending_since}"
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


def pollenation_detail(symbol: str, alpaca_id: str, renamed_from: str | None = None) -> dict:
    """`assetId` is the symbol the fundamentals services key by; `alpacaId` the company, which a rename keeps."""
    return {"assetId": symbol, "alpacaId": alpaca_id, "dataTypes": list(DATA_TYPES), "priority": "high",
            "source": "new_asset", **({"renamedFrom": renamed_from} if renamed_from else {})}
