"""When a date's bars are fetched again, to settle them: the sessions after it. Pure logic, no I/O.

Alpaca's bars of a session keep changing after it: late-reported trades reach them over the following days.
`daily_bars_schedule` fetches a date a few hours after it ended; the settle pass fetches it again on the morning of
the k-th XNYS session after it, for each k of SIGNAL9_SETTLE_SESSIONS (default 1 and 5: the next session's
morning, when most late reports are in, and a week on, when the day has settled). A date without a session of its
own (a weekend or holiday: crypto trades then) is settled with the session before it: on a Monday morning the pass
takes Friday, Saturday and Sunday.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from signal9_pipeline.market_data.days import is_session, sessions_between


def settle_dates(session: date, offsets: Sequence[int]) -> dict[int, list[date]]:
    """k -> the calendar dates D whose k-th session after D is `session`; nothing when `session` is no XNYS session."""
    if not is_session(session):
        return {}
    earlier = sessions_between(session - timedelta(days=10 * max(offsets) + 10), session)
    found = {}
    for k in sorted(set(offsets)):
        if k < 1 or k >= len(earlier):
            continue
        first, following = earlier[-1 - k], earlier[-k]
        found[k] = [first + timedelta(days=n) for n in range((following - first).days)]
    return found
