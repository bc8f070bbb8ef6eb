"""Helpers shared by the pipeline's tests and benchmarks: drive the sandbox, run jobs, read what was delivered,
build bars of the shapes the pipeline stores."""

from __future__ import annotations

import json

import boto3
import dagster as dg
import numpy as np
import pandas as pd
import requests


def put_universe(env, universe) -> None:
    requests.put(f"{env['SIGNAL9_SANDBOX_URL']}/_sandbox/universe", json=universe, timeout=60).raise_for_status()


def run_sync(allow_mass_delisting: bool = False,
             instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    from signal9_pipeline.definitions import defs

    config = {"ops": {"validated_assets": {"config": {"allow_mass_delisting": allow_mass_delisting}}}}
    return defs.resolve_job_def("asset_sync_job").execute_in_process(run_config=config, raise_on_error=False,
                                                                     instance=instance)


def sync_counts(result: dg.ExecuteInProcessResult) -> dict[str, int]:
    metadata = result.asset_materializations_for_node("assets_table")[0].metadata
    return {k: metadata[k].value
            for k in ("new", "updated", "deactivated", "reactivated", "renamed", "unchanged", "write_requests")}


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.event_specific_data.check_name: e.event_specific_data.passed
            for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


class EventTap:
    """An SQS queue behind an EventBridge rule on the pipeline's bus: what consumers really receive."""

    def __init__(self, bus: str, name: str, detail_types: list[str] | None = None):
        self.sqs = boto3.client("sqs")
        self.queue = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = boto3.client("events")
        pattern = {"source": ["signal9.advisor"], **({"detail-type": detail_types} if detail_types else {})}
        events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(pattern))
        events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "tap", "Arn": arn}])

    def drain(self) -> list[dict]:
        """Every event delivered since the last drain, as EventBridge envelopes."""
        received = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10,
                                                WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                return received
            for message in messages:
                received.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])


def small_universe(default_universe: list[dict], n: int = 300) -> list[dict]:
    """A slice of the default universe: n listed equities, 10 crypto pairs, 50 inactive equities."""
    listed = [a for a in default_universe
              if a["status"] == "active" and a["tradable"] and a["class"] == "us_equity"][:n]
    crypto = [a for a in default_universe if a["class"] == "crypto"][:10]
    inactive = [a for a in default_universe if a["status"] == "inactive"][:50]
    return listed + crypto + inactive


def materialize_bars(timeframe: str, first: str, last: str, watchlist: str = "", raise_on_error: bool = False,
                     instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    """One run over dates first..last of one timeframe, as a single-run backfill launches it."""
    from signal9_pipeline.definitions import defs

    config = {"ops": {"ohlc_bars": {"config": {"intraday_watchlist": watchlist or "SPY"}}}}
    return defs.resolve_job_def("daily_bars_job").execute_in_process(
        run_config=config, raise_on_error=raise_on_error, instance=instance,
        tags={"dagster/asset_partition_range_start": f"{first}|{timeframe}",
              "dagster/asset_partition_range_end": f"{last}|{timeframe}"})


def materialize_actions(first, last, instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    """corporate_actions over process dates first..last (dates), as one run, as a backfill launches it."""
    from signal9_pipeline.definitions import defs

    return defs.resolve_job_def("corporate_actions_job").execute_in_process(
        raise_on_error=False, instance=instance, tags={"dagster/asset_partition_range_start": first.isoformat(),
                                                       "dagster/asset_partition_range_end": last.isoformat()})


def max_in_any_window(stamps: list[float], window_s: float = 60.0) -> int:
    """The most timestamps that fall into any window of window_s seconds."""
    stamps = sorted(stamps)
    best, lo = 0, 0
    for hi, t in enumerate(stamps):
        while t - stamps[lo] >= window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def drive_sensor(instance: dg.DagsterInstance, max_ticks: int = 10,
                 raise_on_error: bool = True) -> list[dg.ExecuteInProcessResult]:
    """Evaluate the sensor and run what it asks for, until a tick asks for nothing; the runs' results."""
    from signal9_pipeline.definitions import defs
    from signal9_pipeline.pollenation.sensor import new_symbols_sensor
    from signal9_pipeline.resources.dynamodb import DynamoDBResource

    job, results = defs.resolve_job_def("pollenation_job"), []
    for _ in range(max_ticks):
        requests = new_symbols_sensor(dg.build_sensor_context(instance=instance,
                                                              resources={"dynamodb": DynamoDBResource.from_settings()}))
        if not isinstance(requests, list):
            return results
        results += [job.execute_in_process(run_config=r.run_config, tags={**r.tags, "dagster/run_key": r.run_key},
                                           instance=instance, raise_on_error=raise_on_error) for r in requests]
    raise RuntimeError(f"symbols still pending after {max_ticks} sensor ticks")


def asset_ids(symbols=None) -> dict[str, str]:
    """symbol -> the Alpaca id of the company its `ASSET#{symbol}` item shows (its current holder)."""
    from signal9_pipeline.resources.dynamodb import DynamoDBResource
    from signal9_pipeline.tables.assets import AssetsTable

    table = AssetsTable(DynamoDBResource.from_settings())
    views = (table.get_views(symbols, ["symbol", "alpaca_id"]) if symbols is not None
             else table.views(["symbol", "alpaca_id"]))
    return {v["symbol"]: v["alpaca_id"] for v in views}


def series_of(symbol: str, timeframe: str) -> str:
    """The market-data series of the company `symbol` names today."""
    from signal9_pipeline.tables.market_data import bars_series

    return bars_series(asset_ids([symbol])[symbol], timeframe)


def company_row(symbol: str, asset_class: str = "us_equity", alpaca_id: str | None = None, **fields) -> dict:
    """A validated asset row (what the sync plans from) of a listed company; its id a uuid5 of the symbol by default."""
    import uuid

    from signal9_pipeline.assets_sync.changes import ALPACA_FIELDS

    return {**dict.fromkeys(ALPACA_FIELDS), "alpaca_id": alpaca_id or str(uuid.uuid5(uuid.NAMESPACE_URL, symbol)),
            "symbol": symbol, "name": symbol, "exchange": "CRYPTO" if asset_class == "crypto" else "NASDAQ",
            "asset_class": asset_class, "status": "active", "tradable": True, "attributes": [], **fields}


def sync_rows(rows: list[dict], now: str, day: str, seen_after: str | None = None) -> None:
    """What a sync seeing exactly `rows` at `now` (observation day `day`) writes to the assets table."""
    from signal9_pipeline.assets_sync.changes import Observation, plan_sync
    from signal9_pipeline.resources.dynamodb import DynamoDBResource
    from signal9_pipeline.tables.assets import AssetsTable

    table = AssetsTable(DynamoDBResource.from_settings())
    plan = plan_sync(rows, list(table.companies()), table.view_sources(), Observation(now, day, seen_after))
    table.write(plan.companies, plan.views)


def list_companies(classes: dict[str, str]) -> dict[str, str]:
    """The assets table holds these symbols as listed companies with these classes (as a first sync would write
    them, besides the companies it holds); symbol -> the Alpaca id given to each (a uuid5 of the symbol)."""
    from signal9_pipeline.resources.dynamodb import DynamoDBResource
    from signal9_pipeline.tables.assets import AssetsTable, is_listed
    from signal9_pipeline.timestamps import utc_stamp

    kept = [{k: c.get(k) for k in c} for c in AssetsTable(DynamoDBResource.from_settings()).companies() if is_listed(c)]
    rows = [company_row(s, c) for s, c in classes.items()]
    sync_rows(rows + [r for r in kept if r["symbol"] not in classes], utc_stamp(), "2000-01-01")
    return {r["symbol"]: r["alpaca_id"] for r in rows}


def point_alpaca_at(server, monkeypatch) -> None:
    """The pipeline's Alpaca settings for a sandbox of the test's own: its URLs and a secret of its own holding its
    keys.

    Its own URL also gives it a gateway of its own, so its circuit breaker never carries over to other tests.
    """
    import uuid

    from signal9_pipeline_tests.conftest import TEST_KEY, TEST_SECRET

    secret_id = f"signal9/tests/{uuid.uuid4().hex[:12]}"
    boto3.client("secretsmanager").create_secret(
        Name=secret_id, SecretString=json.dumps({"apiKey": TEST_KEY, "secretKey": TEST_SECRET, "paper": True}))
    for name, value in (("ALPACA_TRADING_URL", server.url), ("ALPACA_DATA_URL", server.url),
                        ("ALPACA_SECRET_ID", secret_id)):
        monkeypatch.setenv(name, value)


def bars_of(first: str, count: int, step_seconds: int, *, price: float, seed: int,
            nan_vwap_share: float = 0.0, zero_trade_share: float = 0.0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Epoch seconds and columns of a random walk priced like Alpaca's bars: cents, whole shares, 4-digit vwap."""
    rng = np.random.default_rng(seed)
    seconds = int(pd.Timestamp(first).timestamp()) + step_seconds * np.arange(count, dtype=np.int64)
    close = np.round(price * np.exp(np.cumsum(rng.normal(0, 0.0008, count))), 2)
    open_ = np.round(close * (1 + rng.normal(0, 0.0003, count)), 2)
    high = np.round(np.maximum(open_, close) * (1 + rng.uniform(0, 0.0015, count)), 2)
    low = np.round(np.minimum(open_, close) * (1 - rng.uniform(0, 0.0015, count)), 2)
    volume, trade_count = rng.integers(1, 5000, count).astype(float), rng.integers(1, 200, count)
    vwap = np.round((high + low + close) / 3, 4)
    vwap[rng.random(count) < nan_vwap_share] = np.nan
    idle = rng.random(count) < zero_trade_share
    volume[idle], trade_count[idle], vwap[idle] = 0.0, 0, 0.0
    return seconds, {"open": open_, "high": high, "low": low, "close": close, "volume": volume,
                     "trade_count": trade_count, "vwap": vwap}


def block_shapes() -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """The item shapes the pipeline writes, by name: the block format's tests and its benchmark share them."""
    return {
        "equity 1Min day (960 bars, 04:00-20:00 New York)": bars_of(
            "2024-06-03T08:00Z", 960, 60, price=187.0, seed=1, nan_vwap_share=0.05, zero_trade_share=0.1),
        "crypto 1Min day (1,440 bars)": bars_of("2024-06-02T00:00Z", 1440, 60, price=67_000.0, seed=2),
        "1Day year (250 bars)": bars_of("2024-01-02T05:00Z", 250, 86_400, price=42.5, seed=3),
        "1Day decade (2,600 bars)": bars_of("2015-01-02T05:00Z", 2600, 86_400, price=18.0, seed=4),
    }
