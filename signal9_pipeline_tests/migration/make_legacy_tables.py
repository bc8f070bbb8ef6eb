"""How `legacy_tables.json` was made: the symbol-keyed release writing its tables, with a rename and a reused ticker.

Run with that release's code first on the path, against a local stack (its settings in the environment):
    git worktree add /tmp/legacy 94cb54c
    PYTHONPATH=/tmp/legacy python signal9_pipeline_tests/migration/make_legacy_tables.py OUT.json
94cb54c is the last commit of the release that keyed everything by symbol. The script drives that release's own
asset sync, bars and corporate-actions jobs against that release's own sandbox (in a thread), and dumps both
tables as they are left (binary attributes base64). Nothing here imports this release's code.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import uuid

TABLE_SUFFIX = uuid.uuid4().hex[:8]
FACEBOOK_ID = "fc6a5dcd-4a70-4b8d-b64f-d83a6dae9ba4"
OLDCO_ID, NEWCO_ID = "6a1b3c5d-7e9f-4a0b-8c1d-2e3f4a5b6c7d", "9d8c7b6a-5f4e-4d3c-ab2a-190817263544"


def main(out: str) -> None:
    from signal9_devstack.local.provision import ASSETS_INDEXES, TABLE_KEYS, ensure_table
    from signal9_devstack.sandbox import start_in_thread
    from signal9_devstack.sandbox.universe import build_universe
    from signal9_pipeline.resources.dynamodb import DynamoDBResource

    assets, market = f"legacy-assets-{TABLE_SUFFIX}", f"legacy-bars-{TABLE_SUFFIX}"
    ensure_table(assets, *TABLE_KEYS["assets"], indexes=ASSETS_INDEXES)
    ensure_table(market, *TABLE_KEYS["market_data"])
    os.environ.update(SIGNAL9_ASSETS_TABLE=assets, SIGNAL9_MARKET_DATA_TABLE=market)
    everyone = build_universe(0)
    template = next(a for a in everyone if a["symbol"] == "AAPL")
    listed = [a for a in everyone if a["class"] == "us_equity" and a["status"] == "active" and a["tradable"]][:6]
    crypto = [a for a in everyone if a["symbol"] == "BTC/USD"]
    facebook = {**template, "id": FACEBOOK_ID, "symbol": "FB", "name": "Meta Platforms, Inc. Class A Common Stock"}
    oldco = {**template, "id": OLDCO_ID, "symbol": "TICK", "name": "OldCo Inc."}
    day0 = listed + crypto + [facebook, oldco]
    secret = json.loads(os.environ.get("LEGACY_SANDBOX_KEYS",
                                       '["PKLEGACY0000000000", "legacy-secret-000000000000000000000000"]'))
    server = start_in_thread(day0, api_key=secret[0], secret_key=secret[1], rate_limit_per_minute=100_000)
    _point_at(server, secret)
    from signal9_pipeline.definitions import defs

    def run(job: str, **kwargs) -> None:
        result = defs.resolve_job_def(job).execute_in_process(raise_on_error=False, **kwargs)
        assert result.success, (job, [e.event_specific_data.error.message[:600] for e in result.all_events
                                      if e.is_step_failure])

    def bars(timeframe: str, first: str, last: str, watchlist: str = "FB,TICK") -> None:
        run("daily_bars_job", run_config={"ops": {"ohlc_bars": {"config": {"intraday_watchlist": watchlist}}}},
            tags={"dagster/asset_partition_range_start": f"{first}|{timeframe}",
                  "dagster/asset_partition_range_end": f"{last}|{timeframe}"})

    def sync() -> None:  # a universe of nine: one delisting is more than the guard's 5%, one twin over 1%
        run("asset_sync_job", run_config={"ops": {"validated_assets": {"config": {
            "allow_mass_delisting": True, "max_quarantine_fraction": 0.2}}}})  # the delisted twin is quarantined

    def put(universe: list[dict]) -> None:
        import requests

        requests.put(f"{server.url}/_sandbox/universe", json=universe, timeout=60).raise_for_status()

    sync()
    bars("1Day", "2024-06-03", "2024-06-07")
    bars("1Min", "2024-06-05", "2024-06-05")
    from signal9_pipeline.market_data.days import last_session

    last = last_session()
    run("corporate_actions_job", tags={"dagster/asset_partition_range_start": (last.replace(day=1)).isoformat(),
                                       "dagster/asset_partition_range_end": last.isoformat()})
    meta = {**facebook, "symbol": "META"}
    put(listed + crypto + [meta, oldco])
    sync()  # the rename: FB inactive, renamed_to META; META renamed_from FB
    delisted = {**oldco, "status": "inactive", "tradable": False}
    put(listed + crypto + [meta, delisted])
    sync()
    newco = {**template, "id": NEWCO_ID, "symbol": "TICK", "name": "NewCo Corp."}
    put(listed + crypto + [meta, delisted, newco])
    sync()  # the reused ticker: TICK "listed again", its alpaca_id overwritten with NewCo's
    bars("1Day", "2024-06-10", "2024-06-14")
    dynamodb = DynamoDBResource.from_settings()
    dump = {"source": "signal9_pipeline at commit 94cb54c, by signal9_pipeline_tests/migration/make_legacy_tables.py",
            "alpaca_assets": listed + crypto + [meta, delisted, newco],
            "assets": [_plain(i) for i in dynamodb.scan(assets)],
            "market_data": [_plain(i) for i in dynamodb.scan(market)]}
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(dump, fh, indent=0, sort_keys=True)
    server.shutdown()
    print(f"{len(dump['assets'])} assets items, {len(dump['market_data'])} market-data items -> {out}")


def _point_at(server, keys: list[str]) -> None:
    import boto3

    secret_id = f"signal9/legacy/{TABLE_SUFFIX}"
    boto3.client("secretsmanager").create_secret(
        Name=secret_id, SecretString=json.dumps({"apiKey": keys[0], "secretKey": keys[1], "paper": True}))
    os.environ.update(ALPACA_TRADING_URL=server.url, ALPACA_DATA_URL=server.url, ALPACA_SECRET_ID=secret_id)


def _plain(item: dict) -> dict:
    return {k: ({"base64": base64.b64encode(v).decode()} if isinstance(v, bytes) else v) for k, v in item.items()}


if __name__ == "__main__":
    main(sys.argv[1])
