"""OHLC bars: the partitioned `ohlc_bars` asset, its DynamoDB encoding, and `read_bars` for downstream code.

`read_bars` is imported on first use, so the plain modules here (`days`, `codec`) load without
Dagster or the AWS and Alpaca clients.
"""

__all__ = ["read_bars"]


def __getattr__(name: str):
    if name == "read_bars":
        from signal9_pipeline.market_data.read import read_bars

        return read_bars
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
