"""OHLC bars: the partitioned `ohlc_bars` asset, its DynamoDB encoding, and `read_bars` for downstream code."""

from signal9_pipeline.market_data.read import read_bars

__all__ = ["read_bars"]
