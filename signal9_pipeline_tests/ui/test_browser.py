"""The Dagster UI in a real browser: lineage, the ohlc_bars partitions and checks tabs and a run's filtered logs.

An instance of its own (temp DAGSTER_HOME, the project's python_logs so `signal9.*` lines land in the
event log) gets an asset sync, the pollenation runs the sensor asks for and a small 1Day backfill;
then `dagster-webserver` serves it on a free loopback port and headless Chromium (Debian's package,
installed by scripts/install-services.sh) checks what README's "Using the UI" section describes.
Screenshots go to $SIGNAL9_TEST_ARTIFACTS (default .signal9/test-artifacts).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest
import requests
import yaml
from playwright.sync_api import Page, expect, sync_playwright

from signal9_devstack.local.stack import free_port
from signal9_pipeline_tests.conftest import PROJECT_ROOT, VENV_BIN
from signal9_pipeline_tests.support import drive_sensor, materialize_bars, put_universe, run_sync, small_universe

pytestmark = pytest.mark.slow

ASSETS = ["alpaca_assets", "validated_assets", "assets_table", "asset_status_events", "ohlc_bars", "corporate_actions",
          "pollenation_events"]
GROUPS = ["asset_sync", "market_data", "pollenation"]
BARS_CHECKS = ["ohlc_consistent", "timestamps_valid", "completeness", "stored_equals_fetched",
               "restatements_within_tolerance"]
UI_WAIT_MS = 60_000  # an upper bound for the UI to show a condition, polled; never a fixed sleep
ARTIFACTS = Path(os.environ.get("SIGNAL9_TEST_ARTIFACTS", PROJECT_ROOT / ".signal9" / "test-artifacts"))


def _partition_keys(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.partition for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("ohlc_bars")}


@pytest.fixture
def populated(bars_env, default_universe, tmp_path, monkeypatch) -> Iterator[dict]:
    """An instance of this test's own with a sync, its pollenation runs and a 1Day backfill of three dates."""
    put_universe(bars_env, small_universe(default_universe, n=20))
    home = tmp_path / "dagster-home"
    home.mkdir()
    project_config = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    (home / "dagster.yaml").write_text(yaml.safe_dump({"telemetry": {"enabled": False},
                                                       "python_logs": project_config["python_logs"]}))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        sync = run_sync(instance=instance)
        pollenation = drive_sensor(instance)
        # Older than pollenation's month of history, so the two write different partitions.
        first = date.today() - timedelta(days=60)
        backfill = materialize_bars("1Day", first.isoformat(), (first + timedelta(days=2)).isoformat(),
                                    instance=instance)
        assert sync.success and pollenation and all(r.success for r in pollenation) and backfill.success
        yield {"instance": instance, "home": home, "sync": sync,
               "pollenated": set().union(*map(_partition_keys, pollenation)), "backfilled": _partition_keys(backfill)}


@pytest.fixture
def webserver(populated) -> Iterator[str]:
    """dagster-webserver on the populated instance; stopped by the pid (and process group) it was started as."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = populated["home"] / "webserver.log"
    with log.open("w") as out:
        process = subprocess.Popen([str(VENV_BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
                                    "-w", "workspace.yaml"],
                                   env={**os.environ, "DAGSTER_HOME": str(populated["home"])}, cwd=PROJECT_ROOT,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not _location_loaded(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"dagster-webserver did not serve the code location (exit {process.poll()}):\n"
                                     f"{log.read_text()[-3000:]}")
            time.sleep(0.5)  # polling interval, not a wait for a result
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the group: the code server it started goes too
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _location_loaded(url: str) -> bool:
    try:
        requests.get(f"{url}/server_info", timeout=2).raise_for_status()
        answer = requests.post(f"{url}/graphql", timeout=10, json={"query": """{ workspaceOrError { ... on Workspace {
            locationEntries { locationOrLoadError { __typename } } } } }"""}).json()
    except (requests.RequestException, ValueError):
        return False
    entries = ((answer.get("data") or {}).get("workspaceOrError") or {}).get("locationEntries") or []
    return bool(entries) and all((e["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation"
                                 for e in entries)


@pytest.fixture
def page(webserver) -> Iterator[Page]:
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.fail("Debian's chromium package is missing: run scripts/install-services.sh (make services) as root")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        # root: no sandbox
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(base_url=webserver, viewport={"width": 1600, "height": 1100})
            # The "Join the Dagster community" dialog that a first visit on localhost shows, dismissed as its Skip
            # button would.
            context.add_init_script("window.localStorage.setItem('communityNux', JSON.stringify('1'))")
            context.set_default_timeout(UI_WAIT_MS)
            expect.set_options(timeout=UI_WAIT_MS)
            yield context.new_page()
        finally:
            expect.set_options(timeout=5_000)  # Playwright's default
            browser.close()


# Every asset node inside the graph's viewport, and the same size on two polls running: the zoom-to-fit has settled.
GRAPH_SETTLED = """() => {
  const nodes = [...document.querySelectorAll('foreignObject')]\
.filter(fo => fo.querySelector('[class*="AssetNode_assetName"]'));
  if (!nodes.length) return false;
  const view = nodes[0].ownerSVGElement.getBoundingClientRect();
  const rects = nodes.map(fo => fo.getBoundingClientRect());
  const key = rects.map(r => [r.left, r.top, r.width].map(Math.round).join(',')).join(';');
  const same = window.__signal9_graph === key;
  window.__signal9_graph = key;
  return same && rects.every(r => r.width > 0 && r.left >= view.left && r.right <= view.right \
&& r.top >= view.top && r.bottom <= view.bottom);
}"""

# The drawn edges (SVG paths with an arrowhead) between two nodes' boxes: from the right side of the source's
# box to just before the left side of the target's, in the graph's own coordinates.
EDGES_BETWEEN = """([source, target]) => {
  const box = name => {
    const fo = document.querySelector(`foreignObject [data-tooltip="${name}"]`).closest('foreignObject');
    return ['x', 'y', 'width', 'height'].map(a => Number(fo.getAttribute(a)));
  };
  const [sx, sy, sw, sh] = box(source), [tx, ty, tw, th] = box(target);
  return [...document.querySelectorAll('path[marker-end]')].map(p => p.getAttribute('d')).filter(d => {
    const n = (d.match(/-?[\\d.]+/g) || []).map(Number);
    if (n.length < 4) return false;
    const [x1, y1] = n, [x2, y2] = n.slice(-2);
    return Math.abs(x1 - (sx + sw)) <= 2 && y1 >= sy && y1 <= sy + sh \
&& x2 >= tx - 15 && x2 <= tx + 1 && y2 >= ty && y2 <= ty + th;
  }).length;
}"""

GRAPHQL_DEPENDENCIES = """async () => {
  const answer = await fetch('/graphql', {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({query: '{ assetNodes { assetKey { path } dependencyKeys { path } } }'})});
  const nodes = (await answer.json()).data.assetNodes;
  return Object.fromEntries(nodes.map(n => [n.assetKey.path.join('/'), n.dependencyKeys.map(k => k.path.join('/'))]));
}"""


def check_lineage(page: Page) -> None:
    page.goto("/asset-groups?expanded=" + ",".join(f"global@global:{g}" for g in GROUPS))  # every group opened
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    for name in ASSETS:
        expect(page.locator(f'foreignObject [data-tooltip="{name}"]')).to_be_visible()
    page.wait_for_function(GRAPH_SETTLED, polling=250)
    drawn = {pair: page.evaluate(EDGES_BETWEEN, list(pair)) for pair in
             [("assets_table", "ohlc_bars"), ("assets_table", "corporate_actions"),
              ("assets_table", "pollenation_events"), ("alpaca_assets", "validated_assets"),
              ("ohlc_bars", "assets_table")]}
    assert drawn == {("assets_table", "ohlc_bars"): 1, ("assets_table", "corporate_actions"): 1,
                     ("assets_table", "pollenation_events"): 1, ("alpaca_assets", "validated_assets"): 1,
                     ("ohlc_bars", "assets_table"): 0}
    page.screenshot(path=ARTIFACTS / "lineage.png", full_page=True)
    # The same edges as the webserver's API states them, asked from the page.
    dependencies = page.evaluate(GRAPHQL_DEPENDENCIES)
    assert "assets_table" in dependencies["ohlc_bars"] and "assets_table" in dependencies["pollenation_events"]
    assert (dependencies["assets_table"] == ["validated_assets"]
            and dependencies["validated_assets"] == ["alpaca_assets"])


def _select_partition(page: Page, day: str) -> None:
    """Pick a date from the (filtered) date list, then 1Day from the timeframe list (a new date clears the
    timeframe)."""
    page.get_by_placeholder("Filter by date…").fill(day)
    page.locator(f'[title="{day}"]').click()  # the list's row; the status bar's end label reads the same
    page.locator('[title="1Day"]').click()
    # the selected partition's header
    expect(page.locator("span", has_text=re.compile(rf"^{day}\|1Day$"))).to_be_visible()
    page.get_by_placeholder("Filter by date…").fill("")


def check_partitions(page: Page, populated: dict) -> None:
    materialized = populated["instance"].get_materialized_partitions(dg.AssetKey("ohlc_bars"))
    pollenated, backfilled = populated["pollenated"], populated["backfilled"]
    assert pollenated and backfilled and not pollenated & backfilled and materialized == pollenated | backfilled
    page.goto("/assets/ohlc_bars?view=partitions")
    expect(page.get_by_text(re.compile(r"^Materialized \([\d,]+\)$"))).to_have_text(
        f"Materialized ({len(materialized):,})")
    # A backfilled partition: written by the backfill's run of daily_bars_job.
    _select_partition(page, min(backfilled).split("|")[0])
    expect(page.get_by_role("link", name="daily_bars_job")).to_be_visible()
    # The newest partition pollenation recorded: its run of pollenation_job, source pollenation.
    _select_partition(page, max(pollenated).split("|")[0])
    expect(page.get_by_role("link", name="pollenation_job")).to_be_visible()
    expect(page.get_by_role("cell", name="pollenation", exact=True)).to_be_visible()
    page.screenshot(path=ARTIFACTS / "ohlc_bars-partitions.png", full_page=True)


def check_bars_checks(page: Page, populated: dict) -> None:
    """ohlc_bars' Checks tab after the backfill: every check shows the result the backfill's run recorded on the
    partitions it wrote, not "Not evaluated"; the selected check's latest execution names one of those partitions."""
    page.goto("/assets/ohlc_bars?view=checks")
    rows = page.locator('[class*="AssetChecks_checkRow"]')
    expect(rows).to_have_count(len(BARS_CHECKS))
    for name in BARS_CHECKS:
        row = rows.filter(has=page.get_by_title(name, exact=True))
        expect(row).to_contain_text("Succeeded")
        expect(row).not_to_contain_text(re.compile("not evaluated", re.IGNORECASE))
    expect(page.get_by_text("Latest execution")).to_be_visible()
    expect(page.locator("span", has_text=re.compile(r"^Passed$")).first).to_be_visible()
    partition = page.get_by_text(re.compile(r"^\d{4}-\d{2}-\d{2}\|1Day$")).first
    expect(partition).to_be_visible()
    assert partition.inner_text().strip() in populated["backfilled"]
    page.screenshot(path=ARTIFACTS / "ohlc_bars-checks.png", full_page=True)


def check_run_log_filter(page: Page, populated: dict) -> None:
    run_id = populated["sync"].run_id
    needle = "/v2/assets"
    shown_levels = [e for e in populated["instance"].all_logs(run_id) if e.level >= logging.INFO]
    matching = [e for e in shown_levels
                if needle in e.message
                and not (e.dagster_event and e.dagster_event.event_type_value.endswith("_PLANNED"))]
    assert matching and all(re.search(r"Alpaca GET /v2/assets: 200 in [\d.]+ ms", e.user_message) for e in matching)
    page.goto(f"/runs/{run_id}")
    rows = page.locator('[class*="LogsRowComponents_row__"]')
    expect(rows.filter(has_text="RUN_SUCCESS")).to_have_count(1)  # the log has loaded to its end
    unfiltered = rows.count()
    page.get_by_placeholder("Filter…").fill(needle)
    expect(rows).to_have_count(len(matching))
    assert unfiltered > len(matching)
    expect(rows.first).to_contain_text("alpaca_assets")
    for row in rows.all():
        expect(row).to_contain_text(re.compile(r"Alpaca GET /v2/assets: 200 in [\d.]+ ms"))
    page.keyboard.press("Escape")  # closes the filter's suggestions
    page.screenshot(path=ARTIFACTS / "run-log-filtered.png", full_page=True)


def test_the_ui_shows_lineage_partitions_checks_and_filtered_run_logs(populated, page):
    check_lineage(page)
    check_partitions(page, populated)
    check_bars_checks(page, populated)
    check_run_log_filter(page, populated)
