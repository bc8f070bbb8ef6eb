"""What the reliability suite tried and what came of it, for RELIABILITY.md.

Each reliability test records every fault it injected: the fault, how many times it was tried,
the outcome a user would see, and how many items, bars or events were lost. With
`SIGNAL9_RELIABILITY_LEDGER=<file>` set, the session appends the records to that file as JSON lines;
`python -m benchmarks.reliability` runs the suite that way and renders the table from the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Trial:
    area: str  # "crash", "alpaca", "aws", "hostile input", "secrets", "soak"
    fault: str  # what was done to the pipeline, e.g. "SIGKILL during BatchWriteItem of the asset sync"
    # what the user sees, e.g. "rerun equals uninterrupted run" or "AlpacaRateLimitError, tables untouched"
    outcome: str
    lost: int  # items, bars or events lost; the goal is 0
    test: str = ""


@dataclass
class Ledger:
    trials: list[tuple[Trial, int]] = field(default_factory=list)

    def record(self, area: str, fault: str, outcome: str, lost: int = 0, times: int = 1, test: str = "") -> None:
        self.trials.append((Trial(area, fault, outcome, lost, test), times))

    def write(self) -> None:
        path = os.environ.get("SIGNAL9_RELIABILITY_LEDGER")
        if not path or not self.trials:
            return
        with Path(path).open("a", encoding="utf-8") as out:
            for trial, times in self.trials:
                out.write(json.dumps({**asdict(trial), "times": times}) + "\n")
