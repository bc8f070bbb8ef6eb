"""pollenation_job: announce a batch of newly listed companies, load their daily history, mark them done.

Each company gets one `pollenationNeeded` event (`assetId` its symbol, `alpacaId` its id) with an idempotency
id that is stable for its pending episode, so a rerun after a crash re-sends the same id and consumers drop
the duplicate. A company is marked pollenated only after its event was accepted and, for a company new to the
table, its daily-bar history (SIGNAL9_POLLENATION_HISTORY_DAYS, default five years) was stored through
ohlc_bars' storage, under the same shared rate limit; a renamed company is announced under its new symbol
(the fundamentals services key by symbol) and keeps the history it has. A company that missed either stays
pending for a later sensor tick, and the run fails naming it.

The job is ops (announce, load, mark: one batch's steps in order), and what they
write is recorded against assets, so the lineage and the partitions tab tell the
truth: each run materializes `pollenation_events` (assets_table -> pollenation_events)
and every `ohlc_bars` 1Day partition whose bars its history load stored.
"""

from datetime import timedelta
from typing import Optional

import dagster as dg

from signal9_pipeline import failpoints, settings
from signal9_pipeline.assets_sync.changes import NEW
from signal9_pipeline.catalog import OWNERS
from signal9_pipeline.identity import spans_of
from signal9_pipeline.market_data.assets import BARS_PARTITIONS
from signal9_pipeline.market_data.days import last_ended_day
from signal9_pipeline.market_data.ingest import IngestOptions, ingest
from signal9_pipeline.market_data.tally import RunTally
from signal9_pipeline.market_data.universe import Listing
from signal9_pipeline.pollenation.batches import pollenation_detail, pollenation_event_id
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.alpaca_errors import fail_without_step_retries
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.resources.events import Event, EventsResource
from signal9_pipeline.resources.metrics import MetricsResource
from signal9_pipeline.tables.assets import POLLENATION_PENDING, AssetsTable
from signal9_pipeline.timestamps import utc_stamp

OP_RETRY = dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
pollenation_events = dg.AssetSpec(
    "pollenation_events", deps=["assets_table"], group_name="pollenation", kinds={"eventbridge"}, owners=OWNERS,
    description="pollenationNeeded events on SIGNAL9_EVENT_BUS for newly listed (or renamed) companies, one per "
                "company and pending episode (idempotent id); published by pollenation_job runs, which "
                "new_symbols_sensor launches.")


class PollenationConfig(dg.Config):
    asset_ids: list[str]


class HistoryConfig(dg.Config):
    days: Optional[int] = None  # None: SIGNAL9_POLLENATION_HISTORY_DAYS, default five years

    def lookback(self) -> int:
        return self.days or settings.get("SIGNAL9_POLLENATION_HISTORY_DAYS")


@dg.op(retry_policy=OP_RETRY, out=dg.Out(dict))
def announce_new_symbols(context: dg.OpExecutionContext, config: PollenationConfig, dynamodb: DynamoDBResource,
                         events: EventsResource, metrics: MetricsResource) -> dict:
    """Publish pollenationNeeded for the batch's companies still pending; which were delivered, which not."""
    items = AssetsTable(dynamodb).get_companies(config.asset_ids)
    pending = [i for i in items if i.get("pollenation_status") == POLLENATION_PENDING]
    skipped = sorted(set(config.asset_ids) - {i["alpaca_id"] for i in pending})
    if skipped:
        context.log.info(f"not pending any more (or unknown), skipped: {', '.join(skipped[:50])}")
    batch = [Event("pollenationNeeded", pollenation_detail(i["symbol"], i["alpaca_id"], _renamed_from(i)),
                   pollenation_event_id(i["symbol"], i["alpaca_id"], i.get("pollenation_pending_since")))
             for i in pending]
    undelivered = {e.detail["alpacaId"] for e in events.publish(batch)}
    delivered = [e for e in batch if e.detail["alpacaId"] not in undelivered]
    shown = ", ".join(f"{e.detail['assetId']} ({e.detail['alpacaId']})" for e in delivered)
    metrics.put("PollenationEventsPublished", len(delivered))
    context.log_event(dg.AssetMaterialization(pollenation_events.key, metadata={
        "delivered": dg.MetadataValue.int(len(delivered)), "undelivered": dg.MetadataValue.int(len(undelivered)),
        "symbols": dg.MetadataValue.text(shown)}))
    context.add_output_metadata({
        "symbols": dg.MetadataValue.text(shown),
        "event_ids": dg.MetadataValue.json({e.detail["alpacaId"]: e.event_id for e in delivered}),
        "delivered": dg.MetadataValue.int(len(delivered)),
        "undelivered": dg.MetadataValue.int(len(undelivered)),
        "skipped": dg.MetadataValue.int(len(skipped)),
    })
    failpoints.hit("pollenation.after_publish")
    if undelivered:
        context.log.error(f"EventBridge did not accept the events of {sorted(undelivered)}; they stay pending")
    new = {i["alpaca_id"] for i in pending if i.get("pollenation_reason", NEW) == NEW}
    return {"delivered": [e.detail["alpacaId"] for e in delivered], "undelivered": sorted(undelivered),
            "new": sorted(new - undelivered)}


def _renamed_from(item: dict) -> str | None:
    spans = spans_of(item.get("symbols"))
    return spans[-2].symbol if item.get("pollenation_reason") != NEW and len(spans) > 1 else None


@dg.op(pool="alpaca_api", retry_policy=OP_RETRY, out=dg.Out(dict))
def load_history(context: dg.OpExecutionContext, config: HistoryConfig, announced: dict, alpaca: AlpacaResource,
                 dynamodb: DynamoDBResource) -> dict:
    """Daily bars of the announced new companies up to yesterday, merged into ohlc_bars' own year buckets."""
    companies = announced.get("new", [])
    if not companies:
        return announced
    last = last_ended_day()
    dates = [last - timedelta(days=n) for n in range(config.lookback())][::-1]
    listings = {i["alpaca_id"]: Listing.of(i) for i in AssetsTable(dynamodb).get_companies(companies)}
    tally = RunTally()
    with fail_without_step_retries():
        ingest(alpaca, dynamodb, "1Day", dates, listings, IngestOptions(), tally)
    if tally.problems:  # held back with their reasons; the rest of the history is stored
        context.log.warning(f"{len(tally.problems)} impossible daily bar(s) held back: "
                            + "; ".join(str(p) for p in tally.problems[:20]))
    for day, figures in _stored_partitions(tally):
        context.log_event(dg.AssetMaterialization(
            "ohlc_bars", partition=str(dg.MultiPartitionKey({"date": day, "timeframe": "1Day"})),
            description=f"daily history of {len(companies)} newly listed company(ies)",
            metadata={"bars_written": dg.MetadataValue.int(figures["bars"]),
                      "source": dg.MetadataValue.text("pollenation")}))
    context.add_output_metadata({"bars_written": dg.MetadataValue.int(tally.bars),
                                 "bars_held_back": dg.MetadataValue.int(len(tally.problems)),
                                 "history_days": dg.MetadataValue.int(config.lookback())})
    return announced


def _stored_partitions(tally: RunTally) -> list[tuple[str, dict[str, int]]]:
    """The ohlc_bars date partitions (those that exist) in which this load stored bars."""
    dates = BARS_PARTITIONS.get_partitions_def_for_dimension("date")
    assert isinstance(dates, dg.TimeWindowPartitionsDefinition)
    first, last = dates.start.date().isoformat(), last_ended_day().isoformat()
    return sorted((day, figures) for (timeframe, day), figures in tally.by_day.items()
                  if timeframe == "1Day" and figures["bars"] and first <= day <= last)


@dg.op
def mark_pollenated(context: dg.OpExecutionContext, announced: dict, dynamodb: DynamoDBResource) -> None:
    """Mark delivered companies done (only if still pending); fail naming those whose events were not delivered."""
    table, now = AssetsTable(dynamodb), utc_stamp()
    delivered, undelivered = announced["delivered"], announced["undelivered"]
    marked = sum(table.mark_pollenated(alpaca_id, now) for alpaca_id in delivered)
    context.add_output_metadata({"marked_pollenated": dg.MetadataValue.int(marked)})
    if undelivered:
        raise dg.Failure(description=f"event or history missing for {len(undelivered)} company(ies): "
                                     f"{', '.join(undelivered[:20])}; they stay pending and a later tick retries them",
                         metadata={"undelivered": dg.MetadataValue.text(", ".join(undelivered))})


@dg.job(description="Announce a batch of newly listed companies (pollenationNeeded events), load their daily history "
                    "and mark them pollenated.",
        tags={"signal9/kind": "pollenation"})
def pollenation_job():
    mark_pollenated(load_history(announce_new_symbols()))
