"""The pipeline's backoff, declared once: how long to wait between attempts, and how many to make.

Every retried call (an Alpaca request, a DynamoDB batch that was throttled or only partly taken, an
EventBridge PutEvents with rejected entries, a bars bucket
another run changed under a conditional put) waits `first_s * 2**(attempt - 1)`, capped at `cap_s`, times
a jitter in [0.5, 1.5), so that runs retrying together spread out. A policy runs as a tenacity loop; a
round that left work undone raises `Unfinished` to go again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import tenacity


class Unfinished(Exception):
    """This attempt left work undone (throttled, unprocessed items, rejected entries): back off and go again."""


@dataclass(frozen=True)
class Backoff:
    attempts: int
    first_s: float
    cap_s: float

    def wait_s(self, attempt: int) -> float:
        """Seconds to wait after attempt number `attempt` (1-based) failed."""
        return min(self.cap_s, self.first_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)

    def retrying(self) -> tenacity.Retrying:
        """Attempts while they raise `Unfinished`; after the last, `Unfinished` is raised to the caller."""
        return tenacity.Retrying(stop=tenacity.stop_after_attempt(self.attempts),
                                 wait=lambda state: self.wait_s(state.attempt_number),
                                 retry=tenacity.retry_if_exception_type(Unfinished), reraise=True)


AWS_BATCHES = Backoff(attempts=12, first_s=0.05, cap_s=5.0)  # DynamoDB: throttling, unprocessed keys and items
BUCKET_CONFLICTS = Backoff(attempts=8, first_s=0.05, cap_s=1.0)  # a bars bucket another run wrote between read and put
EVENTS = Backoff(attempts=5, first_s=0.1, cap_s=2.0)  # EventBridge: entries PutEvents rejected
ALPACA = Backoff(attempts=5, first_s=0.5, cap_s=20.0)  # Alpaca's waits; its attempts are ALPACA_MAX_ATTEMPTS, and a
# 429 with the quota spent waits for the server's reset time instead (resources.alpaca_gateway)
