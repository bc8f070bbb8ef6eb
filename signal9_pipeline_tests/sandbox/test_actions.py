"""Corporate actions in the sandbox over real HTTP: the endpoint, raw split cliffs and adjusted bars agree."""

from __future__ import annotations

import base64
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests
from alpaca.data.historical.corporate_actions import CorporateActionsClient
from alpaca.data.requests import CorporateActionsRequest

from signal9_devstack.sandbox.actions import session_days
from signal9_devstack.sandbox.bars import BarGenerator
from signal9_devstack.sandbox.history import listing_day
from signal9_pipeline_tests.conftest import TEST_KEY, TEST_SECRET, auth_headers, serving

NEW_YORK = ZoneInfo("America/New_York")


def today() -> date:
    from datetime import datetime

    return datetime.now(NEW_YORK).date()


@pytest.fixture(scope="module")
def universe(default_universe) -> list[dict]:
    """Sixty active stocks and a crypto pair: every guaranteed action, a few random ones, quick to list."""
    stocks = [a for a in default_universe if a["class"] == "us_equity" and a["status"] == "active"][:60]
    return [*stocks, next(a for a in default_universe if a["symbol"] == "BTC/USD")]


@pytest.fixture(scope="module")
def server(universe):
    yield from serving(universe)


@pytest.fixture(scope="module")
def found(server) -> dict[str, dict]:
    return guaranteed(server)


def get(server, path, **params) -> requests.Response:
    return requests.get(f"{server.url}{path}", params=params, headers=auth_headers(), timeout=60)


def actions(server, **params) -> dict[str, list[dict]]:
    answer = get(server, "/v1/corporate-actions", **params)
    assert answer.status_code == 200, answer.text
    return answer.json()["corporate_actions"]


def window(days_back: int = 120, days_ahead: int = 60) -> dict[str, str]:
    return {"start": (today() - timedelta(days=days_back)).isoformat(),
            "end": (today() + timedelta(days=days_ahead)).isoformat()}


def guaranteed(server) -> dict[str, dict]:
    """The guaranteed actions, found through the endpoint by their rates, as a test of the pipeline would."""
    found = actions(server, **window(), limit=1000)
    forward = [a for a in found.get("forward_splits", []) if (a["new_rate"], a["old_rate"]) == (4, 1)]
    reverse = [a for a in found.get("reverse_splits", []) if (a["new_rate"], a["old_rate"]) == (1, 10)]
    recent = [a for a in found.get("cash_dividends", [])
              if date.fromisoformat(a["ex_date"]) >= today() - timedelta(days=90)]
    # Quarterly payers have earlier dividends too; the guaranteed dividend's symbol has no other action.
    history = {"start": "2006-01-01", "end": window()["end"], "limit": 1000}
    lone = [a for a in recent if actions(server, symbols=a["symbol"], **history) == {"cash_dividends": [a]}]
    return {"forward": forward[0], "reverse": reverse[0], "dividend": lone[0]}


def daily(server, symbol: str, start: date, end: date, adjustment: str | None = None,
          timeframe: str = "1Day") -> list[dict]:
    params = {"symbols": symbol, "timeframe": timeframe, "feed": "sip", "limit": 10_000,
              "start": start.isoformat(), "end": end.isoformat()}
    if adjustment:
        params["adjustment"] = adjustment
    answer = get(server, "/v2/stocks/bars", **params)
    assert answer.status_code == 200, answer.text
    assert answer.json()["next_page_token"] is None
    return answer.json()["bars"].get(symbol, [])


def new_york_day(stamp: str) -> date:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(NEW_YORK).date()


# --- the actions --------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [3, 60])
def test_every_universe_has_a_4_for_1_split_a_1_for_10_reverse_split_and_a_dividend_in_the_last_90_days(
        sandbox_factory, universe, size):
    server = sandbox_factory(list(universe[:size]), rate_limit_per_minute=100_000)
    client = CorporateActionsClient(TEST_KEY, TEST_SECRET, url_override=server.url)
    parsed = client.get_corporate_actions(CorporateActionsRequest(
        start=today() - timedelta(days=120), end=today() + timedelta(days=60), limit=1000)).data
    found = guaranteed(server)
    assert len({a["symbol"] for a in found.values()}) == 3
    sessions = {date.fromordinal(date(1970, 1, 1).toordinal() + int(d)) for d in session_days()}
    recent = sorted(d for d in sessions if today() - timedelta(days=90) <= d <= today())
    for action in found.values():
        ex = date.fromisoformat(action["ex_date"])
        assert ex in recent[1:-1]  # an XNYS session inside the window, bars on both sides
    assert any(str(a.id) == found["forward"]["id"] and a.new_rate == 4 for a in parsed["forward_splits"])
    assert {a.symbol for a in server.state.actions.guaranteed()} == {a["symbol"] for a in found.values()}


def test_dates_follow_the_recorded_patterns(server, found):
    forward, reverse, dividend = found["forward"], found["reverse"], found["dividend"]
    assert forward["process_date"] == forward["ex_date"] and forward["payable_date"] < forward["ex_date"]
    assert forward["record_date"] < forward["payable_date"] and forward["due_bill_redemption_date"] > forward["ex_date"]
    assert reverse["ex_date"] == reverse["process_date"] == reverse["record_date"] == reverse["payable_date"]
    assert reverse["old_cusip"] != reverse["new_cusip"]
    assert dividend["record_date"] == dividend["ex_date"]  # T+1 settlement
    assert dividend["process_date"] == dividend["payable_date"] > dividend["ex_date"]
    assert 0 < dividend["rate"] and dividend["foreign"] is False and dividend["special"] is False


def test_paging_returns_every_action_once_in_order_and_desc_reverses_it(server):
    params = {"start": (today() - timedelta(days=3 * 365)).isoformat(),
              "end": (today() + timedelta(days=60)).isoformat()}
    whole = get(server, "/v1/corporate-actions", **params, limit=1000).json()
    assert whole["next_page_token"] is None
    everything = [a for kind in whole["corporate_actions"].values() for a in kind]
    assert len(everything) > 20 and len({a["id"] for a in everything}) == len(everything)
    for sort in ("asc", "desc"):
        seen, token, pages, page_spans = [], None, 0, []
        while True:
            page = get(server, "/v1/corporate-actions", **params, limit=7, sort=sort,
                       **({"page_token": token} if token else {})).json()
            pages += 1
            rows = [a for kind in page["corporate_actions"].values() for a in kind]
            assert len(rows) <= 7 and list(page["corporate_actions"]) == sorted(page["corporate_actions"])
            seen.extend(rows)
            page_spans.append((min(a["process_date"] for a in rows), max(a["process_date"] for a in rows)))
            token = page["next_page_token"]
            if token is None:
                break
            cusip, process, action_id = base64.b64decode(token).decode().split("|")  # Alpaca's recorded form
            assert date.fromisoformat(process) and len(action_id) == 36
        assert sorted(a["id"] for a in seen) == sorted(a["id"] for a in everything)
        assert pages == -(-len(everything) // 7)
        if sort == "desc":
            page_spans = page_spans[::-1]
        assert all(page_spans[i][1] <= page_spans[i + 1][0] for i in range(len(page_spans) - 1))  # by process_date


def test_filters_symbols_types_dates_cusips_and_ids(server, found):
    forward = found["forward"]
    by_symbol = actions(server, symbols=forward["symbol"], **window())
    assert by_symbol == {"forward_splits": [forward]}
    assert actions(server, types="reverse_split", **window()).keys() == {"reverse_splits"}
    day = forward["process_date"]
    on_day = actions(server, start=day, end=day, limit=1000)
    assert (all(a["process_date"] == day for kind in on_day.values() for a in kind)
            and forward in on_day["forward_splits"])
    assert actions(server, cusips=forward["cusip"], **window()) == {"forward_splits": [forward]}
    assert actions(server, ids=f"{forward['id']},{found['dividend']['id']}") == \
        {"cash_dividends": [found["dividend"]], "forward_splits": [forward]}
    assert actions(server) == {} or all(a["process_date"] == today().isoformat()  # default: today only
                                       for kind in actions(server).values() for a in kind)


@pytest.mark.parametrize("params, message", [
    ({"types": "split"}, "invalid type: split"),
    ({"ids": "a7932b15-f816-4f83-921e-998b524487b0", "symbols": "AAPL"}, "ids cannot be combined"),
    ({"limit": "1001"}, "invalid limit"),
    ({"start": "2024-03-10", "end": "2024-03-01"}, "end should not be before start"),
    ({"start": "March"}, "Invalid format for parameter start"),
    ({"sort": "newest"}, "invalid sort"),
    ({"page_token": "garbage!!"}, "invalid page token"),
])
def test_bad_requests_answer_400_with_only_a_message(server, params, message):
    answer = get(server, "/v1/corporate-actions", **params)
    assert answer.status_code == 400 and set(answer.json()) == {"message"} and message in answer.json()["message"]


def test_the_endpoint_needs_credentials_like_the_other_data_endpoints(server):
    answer = requests.get(f"{server.url}/v1/corporate-actions", timeout=10)
    assert answer.status_code == 403 and answer.json() == {"message": "forbidden."}
    assert "X-RateLimit-Limit" in get(server, "/v1/corporate-actions").headers


def test_a_rename_at_runtime_is_a_name_change_of_that_day(sandbox_factory, universe):
    server = sandbox_factory(list(universe), rate_limit_per_minute=100_000)
    asset = universe[5]
    renamed = [dict(a, symbol="NEWNM") if a["id"] == asset["id"] else a for a in universe]
    assert requests.put(f"{server.url}/_sandbox/universe", json=renamed, timeout=10).status_code == 200
    # A list published after 20:00 New York is the next trading day's: the rename takes effect that day.
    day = listing_day().isoformat()
    (change,) = actions(server, types="name_change", start=day, end=day)["name_changes"]
    assert (change["old_symbol"], change["new_symbol"], change["process_date"]) == (asset["symbol"], "NEWNM", day)
    assert change["old_cusip"] != change["new_cusip"]
    assert actions(server, types="name_change", symbols=asset["symbol"], start=day, end=day)["name_changes"] == [change]
    requests.put(f"{server.url}/_sandbox/universe", json=renamed, timeout=10).raise_for_status()
    # only a change is a change
    assert len(actions(server, types="name_change", start=day, end=day)["name_changes"]) == 1


# --- bars ---------------------------------------------------------------------------------------
def around(action: dict, before: int = 12, after: int = 8) -> tuple[date, date]:
    ex = date.fromisoformat(action["ex_date"])
    return ex - timedelta(days=before), min(ex + timedelta(days=after), today() - timedelta(days=1))


def generated_daily(symbol: str, start: date, end: date) -> list[tuple[float, float, int]]:
    from datetime import datetime, timezone

    lo = int(datetime(start.year, start.month, start.day, tzinfo=timezone.utc).timestamp() // 60)
    hi = int(datetime(end.year, end.month, end.day, tzinfo=timezone.utc).timestamp() // 60)
    return [(o, c, v) for bars in BarGenerator(symbol, crypto=False).bars("1Day", lo, hi, feed="sip")
            for o, c, v in zip(bars.o.tolist(), bars.c.tolist(), bars.v.tolist())]


@pytest.mark.parametrize("which, ratio", [("forward", 4.0), ("reverse", 0.1)])
def test_raw_bars_show_the_cliff_at_the_splits_ex_date(server, found, which, ratio):
    split = found[which]
    start, end = around(split)
    raw = daily(server, split["symbol"], start, end)
    level = generated_daily(split["symbol"], start, end)  # the generator's prices are the post-split level
    ex = date.fromisoformat(split["ex_date"])
    assert (len(raw) == len(level) and any(new_york_day(b["t"]) < ex for b in raw)
            and any(new_york_day(b["t"]) >= ex for b in raw))
    for bar, (o, c, v) in zip(raw, level):
        if new_york_day(bar["t"]) < ex:
            assert abs(bar["c"] - c * ratio) < 0.005 + 1e-9 and abs(bar["o"] - o * ratio) < 0.005 + 1e-9
            assert abs(bar["v"] - v / ratio) <= max(1 / ratio, 1) and isinstance(bar["v"], int)
        else:
            assert (bar["o"], bar["c"], bar["v"]) == (o, c, v)
    last_before = [b for b in raw if new_york_day(b["t"]) < ex][-1]["c"]
    first_after = [b for b in raw if new_york_day(b["t"]) >= ex][0]["o"]
    assert 0.8 < last_before / first_after / ratio < 1.25  # the jump is the split, not the market


def by_hand(raw: list[dict], found: dict[str, list[dict]], symbol: str, adjustments: set[str]) -> list[dict]:
    """The standard method, from the raw bars and the endpoint's actions: splits / r (volume x r), dividends
    x (1 - D / C), C the raw close of the last bar before the ex-date."""
    out = []
    for bar in raw:
        day, price, volume = new_york_day(bar["t"]), 1.0, 1.0
        if "split" in adjustments:
            for split in found.get("forward_splits", []) + found.get("reverse_splits", []):
                if split["symbol"] == symbol and day < date.fromisoformat(split["ex_date"]):
                    r = split["new_rate"] / split["old_rate"]
                    price, volume = price / r, volume * r
        if "dividend" in adjustments:
            for dividend in found.get("cash_dividends", []):
                ex = date.fromisoformat(dividend["ex_date"])
                if dividend["symbol"] == symbol and day < ex:
                    close = [b for b in raw if new_york_day(b["t"]) < ex][-1]["c"]
                    price *= 1 - dividend["rate"] / close
        out.append({**bar, **{f: bar[f] * price for f in ("o", "h", "l", "c", "vw")}, "v": bar["v"] * volume})
    return out


@pytest.mark.parametrize("adjustment", ["split", "dividend", "all", "split,dividend", "split,spin-off"])
@pytest.mark.parametrize("which", ["forward", "reverse", "dividend"])
def test_adjusted_bars_are_the_standard_method_applied_to_the_raw_bars(server, found, which, adjustment):
    action = found[which]
    symbol = action["symbol"]
    start, end = around(action, before=40)
    recorded = actions(server, symbols=symbol, start="2006-01-01", end=(today() + timedelta(days=60)).isoformat(),
                       limit=1000)
    raw = daily(server, symbol, start - timedelta(days=10), end)  # C of every dividend is in the window
    served = daily(server, symbol, start - timedelta(days=10), end, adjustment=adjustment)
    wanted = {"split", "dividend"} if adjustment == "all" else set(adjustment.split(","))
    expected = by_hand(raw, recorded, symbol, wanted)
    assert [b["t"] for b in served] == [b["t"] for b in expected]
    changed = 0
    for mine, theirs, plain in zip(served, expected, raw):
        for field in ("o", "h", "l", "c", "vw"):
            assert abs(mine[field] - theirs[field]) <= 0.005 + 1e-9, (mine["t"], field)  # cents, as Alpaca rounds
        assert mine["v"] == pytest.approx(theirs["v"], rel=1e-12) and isinstance(mine["v"], int)
        assert mine["n"] == plain["n"]
        changed += mine != plain
    touches = (which == "dividend") == ("dividend" in wanted) or (which != "dividend" and "split" in wanted)
    assert (changed > 0) == touches


def test_split_adjusted_intraday_bars_undo_the_cliff(server, found):
    split = found["forward"]
    ex = date.fromisoformat(split["ex_date"])
    raw = daily(server, split["symbol"], ex - timedelta(days=3), ex + timedelta(days=1), timeframe="1Hour")
    adjusted = daily(server, split["symbol"], ex - timedelta(days=3), ex + timedelta(days=1), adjustment="split",
                     timeframe="1Hour")
    assert [b["t"] for b in raw] == [b["t"] for b in adjusted]
    for r, a in zip(raw, adjusted):
        factor = 4 if new_york_day(r["t"]) < ex else 1
        assert abs(a["c"] - r["c"] / factor) <= 0.005 + 1e-9 and a["v"] == r["v"] * factor


def test_raw_stays_raw_and_crypto_has_no_actions(server, found):
    split = found["forward"]
    start, end = around(split)
    assert daily(server, split["symbol"], start, end, adjustment="raw") == daily(server, split["symbol"], start, end)
    crypto = {"symbols": "BTC/USD", "timeframe": "1Day", "start": start.isoformat(), "end": end.isoformat()}
    assert get(server, "/v1beta3/crypto/us/bars", **crypto, adjustment="all").json() == \
        get(server, "/v1beta3/crypto/us/bars", **crypto).json()
    assert actions(server, symbols="BTC/USD", **window()) == {}
