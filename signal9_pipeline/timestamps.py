"""The one spelling of a moment in the pipeline's tables and events: ISO 8601 UTC to the second, with Z."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_stamp(moment: datetime | float | int | None = None) -> str:
    """`moment` (an aware datetime, epoch seconds, or now) as 2026-12-02T01:23:45Z."""
    if moment is None:
        moment = datetime.now(timezone.utc)
    elif not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(int(moment), timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
