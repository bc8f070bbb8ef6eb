"""Named crash points for the reliability tests: `SIGNAL9_FAILPOINT=name` kills the process there.

Crash-and-rerun tests need a process to die at an exact point (after its events
were sent, before it marked them done). A counted point dies at the Nth time a
process passes it: `SIGNAL9_FAILPOINT=dynamodb.write#17` kills just before the
17th DynamoDB write request is sent, `dynamodb.written#17` just after DynamoDB
answered it. `name#0` never kills and only counts, so a test can measure how
many points an uninterrupted run passes (`passes(name)`) and pick kill points
among them. Unset, a failpoint costs one dict lookup.
"""

import collections
import os
import signal
import threading

from signal9_pipeline import settings

_passes: collections.Counter = collections.Counter()
_passes_lock = threading.Lock()


def hit(name: str) -> None:
    if settings.get("SIGNAL9_FAILPOINT") == name:
        _die()


def hit_nth(name: str) -> None:
    """Count one pass of `name`; kill the process on the Nth pass when SIGNAL9_FAILPOINT is `name#N`."""
    wanted = settings.get("SIGNAL9_FAILPOINT")
    if wanted is None or not wanted.startswith(name + "#"):
        return
    with _passes_lock:  # the bars writer passes from several threads: exactly one of them is the Nth
        _passes[name] += 1
        reached = _passes[name]
    if str(reached) == wanted[len(name) + 1:]:
        _die()


def passes(name: str) -> int:
    """How many times this process passed the counted point `name` (counted only while it is armed)."""
    with _passes_lock:
        return _passes[name]


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
