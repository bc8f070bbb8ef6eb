"""Named crash points for the reliability tests: `SIGNAL9_FAILPOINT=name` kills the process there.

Crash-and-rerun tests need a process to die at an exact point (after its events
were sent, before it marked them done). Unset, a failpoint costs one dict lookup.
"""

import os
import signal


def hit(name: str) -> None:
    if os.environ.get("SIGNAL9_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
