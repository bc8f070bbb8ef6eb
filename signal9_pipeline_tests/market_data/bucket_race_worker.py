"""A worker process for the bucket race test: ingests daily bars of some dates into shared year buckets.

Configuration comes from the environment only, as in production. It waits until
a wall-clock start time so that both workers write the same buckets at once,
then prints its tally as JSON.
"""

import json
import sys
import time
from datetime import date

from signal9_pipeline.market_data.ingest import IngestOptions, ingest
from signal9_pipeline.market_data.tally import RunTally
from signal9_pipeline.market_data.universe import companies_named
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.dynamodb import DynamoDBResource


def main(start: float, symbols: str, days: str) -> None:
    alpaca, dynamodb = AlpacaResource.from_settings(), DynamoDBResource.from_settings()
    listings = companies_named(dynamodb, symbols.split(","))
    tally = RunTally()
    time.sleep(max(0.0, start - time.time()))
    for day in days.split(","):  # one ingest per date: each reads, merges and writes every bucket again
        ingest(alpaca, dynamodb, "1Day", [date.fromisoformat(day)], listings, IngestOptions(), tally)
    print(json.dumps({"items": tally.items, "bars": tally.bars, "write_conflicts": tally.write_conflicts}), flush=True)


if __name__ == "__main__":
    main(float(sys.argv[1]), sys.argv[2], sys.argv[3])
