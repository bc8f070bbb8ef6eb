"""A worker process for the shared-limit test: calls Alpaca in a loop between two wall-clock times.

Configuration comes from the environment only, as in production. The loop runs
in a daemon thread so that the process ends at `end` even while it waits for a
token; it prints how many requests it completed.
"""

import sys
import threading
import time
from datetime import datetime

from signal9_pipeline.resources.alpaca import AlpacaResource


def call_forever(resource: AlpacaResource) -> None:
    calls = 0
    while True:
        if calls % 2:
            resource.list_assets(asset_class="crypto")
        else:
            for asset_class, symbol in (("us_equity", "AAPL"), ("crypto", "BTC/USD")):
                for _ in resource.iter_bars([symbol], "1Day", datetime(2024, 6, 3), datetime(2024, 6, 7),
                                            asset_class=asset_class):
                    pass
        calls += 1


def main(start: float, end: float) -> None:
    resource = AlpacaResource.from_settings()
    time.sleep(max(0.0, start - time.time()))
    threading.Thread(target=call_forever, args=(resource,), daemon=True).start()
    time.sleep(max(0.0, end - time.time()))
    print(f"requests_sent={resource.requests_sent}", flush=True)


if __name__ == "__main__":
    main(float(sys.argv[1]), float(sys.argv[2]))
