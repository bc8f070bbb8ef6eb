"""Run the reliability suite and write RELIABILITY.md from what it recorded.

Every reliability test records each fault it injected in the ledger
(signal9_pipeline_tests/reliability/ledger.py). This runs the suite with the ledger pointed at a
file, then renders one table row per fault: how many times it was tried, the outcome, and how
much was lost. The table is only written when the whole suite passed.

    python -m benchmarks.reliability            # writes RELIABILITY.md
    python -m benchmarks.reliability --soak-days 30   # also the 30-day soak (benchmarks.soak)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = "signal9_pipeline_tests/reliability"


def run_suite(ledger: Path) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", SUITE, "-q", "-p", "no:cacheprovider"], cwd=ROOT,
                          env={**os.environ, "SIGNAL9_RELIABILITY_LEDGER": str(ledger), "SIGNAL9_KILL_POINTS": "20"},
                          capture_output=True, text=True)
    summary = next((line for line in reversed(done.stdout.splitlines()) if " passed" in line or " failed" in line), "")
    return done.returncode, summary.strip("= "), time.monotonic() - started


def run_soak(days: int) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "benchmarks.soak", "--days", str(days)], cwd=ROOT,
                          capture_output=True, text=True)
    kept = [line for line in done.stdout.splitlines() if line.startswith(("|", "machine", "peak RSS"))]
    # Blank lines around the table, so markdown renders it as one.
    table = "\n".join(f"\n{line}" if line.startswith("peak RSS")
                      else f"{line}\n" if line.startswith("machine") else line
                      for line in kept)
    return done.returncode, table


def rows(ledger: Path) -> list[dict]:
    """One row per (area, fault, outcome): times summed, lost summed."""
    merged: OrderedDict[tuple[str, str, str], dict] = OrderedDict()
    for line in ledger.read_text().splitlines():
        trial = json.loads(line)
        key = (trial["area"], trial["fault"], trial["outcome"])
        row = merged.setdefault(key, {"area": trial["area"], "fault": trial["fault"], "outcome": trial["outcome"],
                                      "times": 0, "lost": 0})
        row["times"] += trial["times"]
        row["lost"] += trial["lost"]
    order = ["crash", "alpaca", "aws", "hostile input", "secrets", "soak"]
    return sorted(merged.values(), key=lambda r: order.index(r["area"]) if r["area"] in order else len(order))


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(table: list[dict], summary: str, wall_s: float, soak: str | None) -> str:
    lost = sum(r["lost"] for r in table)
    lines = [
        "# Reliability",
        "",
        "What the reliability suite (`signal9_pipeline_tests/reliability/`, part of `make test`) did to the pipeline,",
        "and what came of it. Written by `python -m benchmarks.reliability` from the faults the tests recorded",
        "while they ran; do not edit by hand.",
        "",
        f"Run: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; pytest: {summary} in {wall_s:.0f} s.",
        "",
        f"Faults tried: {len(table)} kinds, {sum(r['times'] for r in table)} times in all. Lost: {lost}.",
        "",
        "| area | fault | times | outcome | lost |",
        "|---|---|---|---|---|",
        *[f"| {r['area']} | {cell(r['fault'])} | {r['times']} | {cell(r['outcome'])} | {r['lost']} |" for r in table],
    ]
    if soak:
        lines += ["", "## Soak (`python -m benchmarks.soak`)", "", soak]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--soak-days", type=int, default=0,
                        help="also run the soak benchmark over this many trading days")
    parser.add_argument("--output", default=str(ROOT / "RELIABILITY.md"))
    args = parser.parse_args()
    ledger = Path(tempfile.mkdtemp(prefix="signal9-reliability-")) / "ledger.jsonl"
    code, summary, wall_s = run_suite(ledger)
    print(f"reliability suite: {summary} in {wall_s:.0f} s")
    if code != 0 or not ledger.exists():
        print("the suite failed; RELIABILITY.md left as it was", file=sys.stderr)
        return 1
    soak = None
    if args.soak_days:
        soak_code, soak = run_soak(args.soak_days)
        if soak_code != 0:
            print(f"the soak diverged from its model:\n{soak}", file=sys.stderr)
            return 1
    Path(args.output).write_text(render(rows(ledger), summary, wall_s, soak))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
