"""EventBridge publishing for the pipeline's `signal9.advisor` events, with nothing silently lost.

`PutEvents` takes 10 entries per call and may reject some of them
(`FailedEntryCount`); those are retried with backoff. Entries still failing
are returned to the caller, which keeps them pending for a later attempt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from botocore.exceptions import BotoCoreError, ClientError
from dagster_aws.utils import ResourceWithBoto3Configuration

from signal9_pipeline import settings
from signal9_pipeline.resources.configured import FromSettings, boto3_client
from signal9_pipeline.retry import EVENTS, Unfinished

SOURCE = "signal9.advisor"
ENTRIES_PER_CALL = 10


@dataclass(frozen=True)
class Event:
    detail_type: str
    detail: dict[str, Any]
    event_id: str  # idempotency id: consumers drop an id they have already seen


class EventsResource(FromSettings, ResourceWithBoto3Configuration):
    """The pipeline's EventBridge bus, on dagster_aws' boto3 configuration (unset fields: boto3's own chain)."""

    SETTINGS: ClassVar[dict[str, str]] = {"event_bus": "SIGNAL9_EVENT_BUS"}

    event_bus: str = settings.default("SIGNAL9_EVENT_BUS")

    def bus(self) -> str:
        return self.event_bus

    def publish(self, events: list[Event]) -> list[Event]:
        """Publish every event; returns those that still failed after retries (empty when all were accepted)."""
        client, failed = boto3_client(self, "events"), []
        for start in range(0, len(events), ENTRIES_PER_CALL):
            failed += self._publish_chunk(client, events[start : start + ENTRIES_PER_CALL])
        return failed

    def _publish_chunk(self, client, chunk: list[Event]) -> list[Event]:
        pending = chunk
        try:
            for attempt in EVENTS.retrying():
                with attempt:
                    try:
                        answer = client.put_events(Entries=[self._entry(e) for e in pending])
                    except (BotoCoreError, ClientError):
                        raise Unfinished() from None
                    results = answer.get("Entries", [])
                    rejected = [e for e, r in zip(pending, results) if "ErrorCode" in r or "EventId" not in r]
                    pending = rejected + pending[len(results):]  # an entry without a result was not accepted either
                    if pending:
                        raise Unfinished()
                    return []
        except Unfinished:
            return pending
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _entry(self, event: Event) -> dict[str, Any]:
        detail = {**event.detail, "eventId": event.event_id}
        return {"Source": SOURCE, "DetailType": event.detail_type, "Detail": json.dumps(detail, sort_keys=True),
                "EventBusName": self.bus()}
