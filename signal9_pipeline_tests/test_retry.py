"""The one backoff policy: waits grow, are capped and jittered; a loop gives up after its attempts."""

import pytest

from signal9_pipeline.retry import AWS_BATCHES, Backoff, Unfinished


def test_waits_double_from_the_first_up_to_the_cap_with_jitter():
    policy = Backoff(attempts=6, first_s=0.1, cap_s=0.5)
    for attempt, nominal in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (9, 0.5)]:
        waits = [policy.wait_s(attempt) for _ in range(200)]
        assert nominal * 0.5 <= min(waits) and max(waits) < nominal * 1.5
        assert max(waits) - min(waits) > nominal * 0.2  # jittered, not a fixed pause


def test_a_loop_retries_unfinished_rounds_then_gives_up_and_lets_other_errors_through(monkeypatch):
    monkeypatch.setattr(Backoff, "wait_s", lambda self, attempt: 0.0)
    rounds = []

    def until(done_at: int):
        for attempt in AWS_BATCHES.retrying():
            with attempt:
                rounds.append(attempt.retry_state.attempt_number)
                if len(rounds) < done_at:
                    raise Unfinished()
                return "done"

    assert until(3) == "done" and rounds == [1, 2, 3]
    rounds.clear()
    with pytest.raises(Unfinished):
        until(99)
    assert len(rounds) == AWS_BATCHES.attempts
    rounds.clear()
    with pytest.raises(KeyError):
        for attempt in AWS_BATCHES.retrying():
            with attempt:
                rounds.append(1)
                raise KeyError("not a retry")
    assert rounds == [1]
