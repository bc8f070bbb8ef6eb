"""`assemble` (one concatenation, one sort for any number of companies) against the per-company pandas reference:
each company's blocks concatenated, sorted by time (a bucket over a symbol-day item), one bar per time, cut to the
window and session, then the companies' frames concatenated in the order asked."""

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signal9_pipeline.market_data.assemble import COLUMNS, VALUES, Block, assemble
from signal9_pipeline.market_data.days import REGULAR, session_codes

START = int(datetime(2024, 3, 7, tzinfo=timezone.utc).timestamp())
STEP = 3600  # 1Hour bars over four days: pre, regular and post-market bars, and a weekend
IDS = ["id-a", "id-b", "id-c", "id-d"]


@st.composite
def blocks(draw) -> Block:
    slots = draw(st.lists(st.integers(0, 96), min_size=0, max_size=30, unique=True))
    seconds = np.array(sorted(START + STEP * s for s in slots), dtype=np.int64)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    columns = {c: rng.uniform(1, 500, len(seconds)) for c in VALUES}
    columns["trade_count"] = rng.integers(0, 1000, len(seconds))
    columns["vwap"][rng.random(len(seconds)) < 0.2] = np.nan  # a missing vwap travels as NaN
    return Block(seconds, columns, draw(st.booleans()), crypto=False)


def reference(companies, company_blocks, start, end, session) -> pd.DataFrame:
    frames = []
    for label, alpaca_id in companies:
        parts = [pd.DataFrame({"timestamp": pd.to_datetime(b.seconds * 1_000_000_000, utc=True), **b.columns,
                               "bucketed": b.bucketed}) for b in company_blocks.get(alpaca_id, [])]
        if not parts:
            continue
        bars = pd.concat(parts, ignore_index=True).sort_values(["timestamp", "bucketed"], kind="stable")
        bars = bars.drop_duplicates("timestamp", keep="last")
        inside = (bars["timestamp"] >= start) & (bars["timestamp"] <= end)
        if session != "all":
            regular = session_codes(bars["timestamp"], "1Hour") == REGULAR
            inside &= regular if session == "regular" else ~regular
        bars = bars.loc[inside, COLUMNS].sort_values("timestamp", kind="stable")
        if len(bars):
            frames.append(bars.assign(symbol=label)[["symbol", *COLUMNS]])
    return pd.concat(frames, ignore_index=True) if frames else None


@settings(max_examples=300, deadline=None)
@given(company_blocks=st.dictionaries(st.sampled_from(IDS), st.lists(blocks(), max_size=4), max_size=4),
       asked=st.lists(st.tuples(st.sampled_from(["A", "B", "C", "D", "E"]), st.sampled_from(IDS)), min_size=1,
                      max_size=6, unique_by=lambda c: c[0]),
       bounds=st.tuples(st.integers(-2, 100), st.integers(-2, 100)),
       session=st.sampled_from(["all", "regular", "extended"]))
def test_assembling_all_companies_at_once_equals_assembling_each_alone(company_blocks, asked, bounds, session):
    start, end = (pd.Timestamp((START + STEP * b + 1800) * 1_000_000_000, tz="UTC") for b in sorted(bounds))
    expected = reference(asked, company_blocks, start, end, session)
    bars = assemble(asked, company_blocks, "1Hour", start, end, session).frame(with_symbol=True)
    if expected is None:
        assert bars.empty and list(bars.columns) == ["symbol", *COLUMNS]
    else:
        pd.testing.assert_frame_equal(bars, expected)
    # Each company's span holds exactly its own rows, in the order asked.
    spans = assemble(asked, company_blocks, "1Hour", start, end, session).spans
    assert [(label, i) for label, i, _, _ in spans] == asked
    assert all(set(bars["symbol"].iloc[first:stop]) <= {label} for label, _, first, stop in spans)


def test_a_crypto_company_in_a_session_read_is_refused_by_name():
    crypto = Block(np.array([START], dtype=np.int64), {c: np.ones(1) for c in VALUES}, True, crypto=True)
    with pytest.raises(ValueError, match="BTC/USD is crypto"):
        assemble([("BTC/USD", "id-a")], {"id-a": [crypto]}, "1Hour", pd.Timestamp(0, tz="UTC"),
                 pd.Timestamp.now(tz="UTC"), "regular")
