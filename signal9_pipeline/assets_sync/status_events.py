"""asset_status_events: publish the status changes the sync recorded in the items' outbox.

Each deactivation, reactivation and rename left an `assetStatusChanged` event
(with a stable id) in its item's `pending_events`. This asset publishes them
and removes them from the item only after EventBridge accepted them, with a
conditional update (the list's size) so an event appended meanwhile is never lost. A crash between
the two re-sends the same ids next time; consumers drop the duplicates.
"""

import dagster as dg

from signal9_pipeline.catalog import OWNERS
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.resources.events import Event, EventsResource
from signal9_pipeline.resources.metrics import MetricsResource
from signal9_pipeline.tables.assets import AssetsTable


@dg.asset(group_name="asset_sync", kinds={"eventbridge"}, deps=["assets_table"], owners=OWNERS,
          description="assetStatusChanged events for every status change the sync recorded, each published once.")
def asset_status_events(context: dg.AssetExecutionContext, dynamodb: DynamoDBResource, events: EventsResource,
                        metrics: MetricsResource) -> dg.MaterializeResult:
    table = AssetsTable(dynamodb)
    owing = table.owing_events()
    batch = [(item, Event(e["detail_type"], e["detail"], e["event_id"]))
             for item in owing for e in item["pending_events"]]
    failed_ids = {e.event_id for e in events.publish([event for _, event in batch])}
    cleared = 0
    for item in owing:
        published = [e for e in item["pending_events"] if e["event_id"] not in failed_ids]
        remaining = [e for e in item["pending_events"] if e["event_id"] in failed_ids]
        if published and table.clear_events(item, remaining):
            cleared += 1
    metrics.put("AssetStatusEventsPublished", len(batch) - len(failed_ids))
    if failed_ids:
        raise dg.Failure(description=f"{len(failed_ids)} assetStatusChanged event(s) not accepted by EventBridge; "
                                     "they stay in their items and the next run publishes them")
    return dg.MaterializeResult(metadata={
        "published": dg.MetadataValue.int(len(batch)),
        "items_cleared": dg.MetadataValue.int(cleared),
        "changes": dg.MetadataValue.json([e.detail for _, e in batch[:50]]),
    })
