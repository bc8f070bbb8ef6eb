"""`ohlc_bars` partitions materialized by the real CLI (`dg launch`) against the replay server, and what they recorded.

A subprocess per launch, as a user or CI runs it: the code location is loaded
with the test's settings (the first date partition among them, so recordings
of any year are partitions), in a Dagster home of the test's own.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg

from signal9_pipeline_tests.conftest import PROJECT_ROOT, VENV_BIN
from signal9_pipeline_tests.support import list_companies


def list_assets(env: dict[str, str], classes: dict[str, str]) -> dict[str, str]:
    """The assets table holds these symbols as listed companies with these classes; symbol -> asset id."""
    return list_companies(classes)


@dataclass(frozen=True)
class Outcome:
    """The newest run's materialization metadata and check evaluations, and every partition observation so far."""

    metadata: dict
    checks: dict  # check name -> AssetCheckEvaluation
    observations: dict  # partition key -> metadata of its newest observation

    def passed(self, *names: str) -> bool:
        return all(self.checks[n].passed for n in names or self.checks)


class Launcher:
    """Launches `ohlc_bars` partition ranges with the CLI in one Dagster home, against the replay server."""

    def __init__(self, home: Path, replay_url: str, first_partition: date):
        home.mkdir(exist_ok=True)
        (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
        self.home = home
        self.env = {**os.environ, "DAGSTER_HOME": str(home), "VIRTUAL_ENV": str(VENV_BIN.parent),
                    "ALPACA_DATA_URL": replay_url, "SIGNAL9_BARS_START_DATE": first_partition.isoformat()}

    def launch(self, timeframe: str, first: date, last: date, watchlist: str = "SPY") -> Outcome:
        """One run over first..last, which must succeed; what it recorded."""
        partition_range = f"{first.isoformat()}|{timeframe}...{last.isoformat()}|{timeframe}"
        done = subprocess.run([str(VENV_BIN / "dg"), "launch", "--assets", "ohlc_bars",
                               "--partition-range", partition_range],
                              cwd=PROJECT_ROOT, env={**self.env, "SIGNAL9_INTRADAY_WATCHLIST": watchlist},
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            assert {r.status for r in instance.get_runs()} == {dg.DagsterRunStatus.SUCCESS}
            event = instance.get_latest_materialization_event(dg.AssetKey("ohlc_bars"))
            records = instance.get_records_for_run(event.run_id,
                                                   of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
            checks = {e.check_name: e for e in (r.event_log_entry.dagster_event.event_specific_data for r in records)}
            observed = instance.fetch_observations(dg.AssetKey("ohlc_bars"), limit=10_000, ascending=True).records
            return Outcome(event.asset_materialization.metadata, checks,
                           {r.partition_key: r.asset_observation.metadata for r in observed})
