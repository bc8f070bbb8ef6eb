"""OHLC bars: the partitioned `ohlc_bars` asset, its DynamoDB encoding, and `read_bars` / `listed_on` for
downstream code.

`read_bars` and `listed_on` are imported on first use, so the plain modules here (`days`, `codec`) load without
Dagster or the AWS and Alpaca clients.
"""

__all__ = ["listed_on", "read_bars"]


def __getattr__(name: str):
    if name in __all__:
        from signal9_pipeline.market_data import read

        return getattr(read, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
