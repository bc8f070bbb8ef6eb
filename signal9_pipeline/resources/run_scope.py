"""What the resources know of the run they serve: its job and its time budget.

A run is one process in production (the ECS run launcher), so the scope is
per process: set when a run's resources are set up, read by the access layer
to tag metrics with the job and to stop a run that has used up its budget
(`signal9/time_budget_s` run tag; the asset sync's is 300 s) instead of
letting it run on.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Optional

BUDGET_TAG = "signal9/time_budget_s"


@dataclass
class RunScope:
    run_id: Optional[str] = None
    job: Optional[str] = None
    started: float = 0.0  # monotonic
    budget_s: Optional[float] = None

    def remaining_s(self) -> Optional[float]:
        if self.budget_s is None:
            return None
        return self.budget_s - (time.monotonic() - self.started)

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


_scope = RunScope()
_lock = threading.Lock()


def enter(run_id: str, job: str, tags: dict[str, str]) -> RunScope:
    """Idempotent per run: every resource of a run calls it; the first call starts the clock."""
    global _scope
    with _lock:
        if _scope.run_id != run_id:
            budget = tags.get(BUDGET_TAG)
            _scope = RunScope(run_id, job, time.monotonic(), float(budget) if budget else None)
        return _scope


def current() -> RunScope:
    return _scope


def enter_from(context) -> None:
    """From a resource's init context (no-op outside a run)."""
    run = getattr(context, "run", None)
    if run is not None:
        enter(run.run_id, run.job_name, dict(run.tags))
