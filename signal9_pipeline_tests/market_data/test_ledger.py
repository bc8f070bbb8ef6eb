"""ledger: what a re-fetch changes in stored bars, and the bucket rebuilt as it was stored at any moment."""

import numpy as np
import pandas as pd
import pytest

from signal9_pipeline.market_data.ledger import (
    ADDED_LATE,
    REFUSED,
    RESTATED,
    RESTORED,
    WITHDRAWN,
    Bucket,
    Fetch,
    LedgerError,
    as_known_at,
    beyond_tolerance,
    decode_changes,
    encode_changes,
    merge,
    relative_changes,
)

DAY1, DAY2 = "2024-06-03", "2024-06-04"
T1, T2, T3 = 1717417800, 1717417860, 1717417920  # three minutes of DAY1
T4 = 1717504200  # a minute of DAY2


def bars(*rows):
    """(second, day, volume) rows -> seconds, columns, days; prices 10/11/9/10.5, vwap 10.2, 5 trades."""
    seconds = np.array([r[0] for r in rows], dtype=np.int64)
    volume = np.array([r[2] for r in rows], dtype=float)
    n = len(rows)
    columns = {"open": np.full(n, 10.0), "high": np.full(n, 11.0), "low": np.full(n, 9.0), "close": np.full(n, 10.5),
               "volume": volume, "vwap": np.full(n, 10.2), "trade_count": np.full(n, 5, dtype=np.int64)}
    return seconds, columns, np.array([r[1] for r in rows], dtype=object)


def fetch(*rows, held=()):
    seconds, columns, days = bars(*rows)
    return Fetch(seconds, columns, {r[1] for r in rows} | {h["day"] for h in held}, list(held), days)


def first_write(*rows, now="2024-06-04T05:00:00Z"):
    return merge(Bucket(np.zeros(0, dtype=np.int64), {c: np.zeros(0) for c in bars((0, "", 0))[1]},
                        np.zeros(0, dtype=object)), fetch(*rows), now)


def test_a_first_fetch_is_no_revision_and_records_when_each_day_was_stored():
    merged = first_write((T1, DAY1, 100), (T2, DAY1, 200))
    assert merged.changes.empty and merged.first_days == [DAY1] and not merged.unchanged
    assert merged.bucket.days_stored == {DAY1: "2024-06-04T05:00:00Z"} and merged.bucket.seconds.tolist() == [T1, T2]


def test_a_refetch_records_restated_late_withdrawn_restored_and_refused_bars_and_keeps_every_stored_bar():
    stored = first_write((T1, DAY1, 100), (T2, DAY1, 200), (T3, DAY1, 300)).bucket
    held = [{"day": DAY1, "t": pd.Timestamp(T3, unit="s", tz="UTC").isoformat(), "field": "l",
             "reason": "price not positive"}]
    second = merge(stored, fetch((T1, DAY1, 110), held=held), "2024-06-05T12:30:00Z")  # T2 gone, T3 refused
    changes = dict(zip(second.changes["timestamp"], second.changes["change"]))
    assert changes == {T1: RESTATED, T2: WITHDRAWN, T3: REFUSED}
    assert second.bucket.seconds.tolist() == [T1, T2, T3] and second.bucket.withdrawn == {T2: "2024-06-05T12:30:00Z"}
    assert second.kept_at_held == 1
    third = merge(second.bucket, fetch((T1, DAY1, 110), (T2, DAY1, 205), (T3, DAY1, 300), (T4, DAY2, 40)),
                  "2024-06-10T12:30:00Z")
    changes = dict(zip(third.changes["timestamp"], third.changes["change"]))
    assert changes == {T2: RESTORED} and third.first_days == [DAY2] and third.bucket.withdrawn == {}
    late = merge(third.bucket, fetch((T1, DAY1, 110), (T2, DAY1, 205), (T3, DAY1, 300), (T3 + 60, DAY1, 7)),
                 "2024-06-11T12:30:00Z")
    assert late.changes["change"].tolist() == [ADDED_LATE] and late.first_days == []
    same = merge(late.bucket, fetch((T1, DAY1, 110), (T2, DAY1, 205), (T3, DAY1, 300), (T3 + 60, DAY1, 7)),
                 "2024-06-12T12:30:00Z")
    assert same.unchanged  # a rerun with the same answer changes nothing


def test_the_bucket_known_at_a_moment_is_exactly_what_was_stored_then():
    times = ["2024-06-04T05:00:00Z", "2024-06-05T12:30:00Z", "2024-06-11T12:30:00Z"]
    one = first_write((T1, DAY1, 100), (T2, DAY1, 200), now=times[0])
    two = merge(one.bucket, fetch((T1, DAY1, 102), (T2, DAY1, 200), (T3, DAY1, 5), (T4, DAY2, 40)), times[1])
    three = merge(two.bucket, fetch((T1, DAY1, 103), (T3, DAY1, 5)), times[2])  # T2 withdrawn
    revisions = [(times[1], two.changes), (times[2], three.changes)]
    states = {times[0]: one.bucket, times[1]: two.bucket}
    for moment, expected in states.items():
        rebuilt = as_known_at(three.bucket, revisions, moment)
        kept = [s not in expected.withdrawn for s in expected.seconds]
        assert rebuilt.seconds.tolist() == expected.seconds[kept].tolist(), moment
        for c in ("volume", "close", "trade_count"):
            assert rebuilt.columns[c].tolist() == expected.columns[c][kept].tolist(), (moment, c)
    now = as_known_at(three.bucket, revisions, "2024-06-12T00:00:00Z")
    assert now.seconds.tolist() == [T1, T3, T4] and now.columns["volume"].tolist() == [103, 5, 40]  # T2: withdrawn
    assert as_known_at(three.bucket, revisions, "2024-06-01T00:00:00Z").seconds.tolist() == []  # before any store


def test_days_stored_before_the_ledger_began_cannot_be_rebuilt_before_it():
    legacy = Bucket(*bars((T1, DAY1, 100)))  # written before ledgers: no days_stored
    merged = merge(legacy, fetch((T4, DAY2, 40)), "2024-06-05T05:00:00Z")
    with pytest.raises(LedgerError, match="before this bucket's ledger began at 2024-06-05T05:00:00Z"):
        as_known_at(merged.bucket, [], "2024-06-04T00:00:00Z")
    assert as_known_at(merged.bucket, [], "2024-06-06T00:00:00Z").seconds.tolist() == [T1, T4]


def test_changes_round_trip_and_a_corrupt_block_is_a_typed_error():
    stored = first_write((T1, DAY1, 100)).bucket
    changes = merge(stored, fetch((T1, DAY1, 150)), "2024-06-05T12:30:00Z").changes
    block, checksum = encode_changes(changes)
    again = decode_changes(block, checksum)
    assert (again["timestamp"].tolist() == [T1] and again["old_volume"].tolist() == [100]
            and again["new_volume"].tolist() == [150])
    with pytest.raises(LedgerError, match="checksum"):
        decode_changes(block[:-1] + b"x", checksum)


def test_tolerance_names_price_changes_and_volume_changes_above_five_percent():
    stored = first_write((T1, DAY1, 100), (T2, DAY1, 100), (T3, DAY1, 100)).bucket
    answer = fetch((T1, DAY1, 104), (T2, DAY1, 106), (T3, DAY1, 100))
    answer.columns["close"][2] = 10.51  # a price revision, however small
    changes = merge(stored, answer, "2024-06-05T12:30:00Z").changes
    assert sorted(beyond_tolerance(changes)["timestamp"]) == [T2, T3]
    assert max(relative_changes(changes)) == pytest.approx(0.06)
