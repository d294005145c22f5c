"""What happens after an attempt fails: retry after a delay, open the breaker, or trip the step.

Pure decisions over the step's folded state and its policies, so replay and resume reach the same
decision the original reactor did (jitter is drawn once and then recorded in the event).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Literal

from stepledger.store.runstate import UNCOUNTED_REASONS, StepState

from .model import BreakerPolicy, RetryPolicy, Step


@dataclass(frozen=True)
class Decision:
    """The verdict on a failed step: `retry` after `delay_s`, `open_breaker` until a trial, or `trip`."""

    kind: Literal["retry", "open_breaker", "trip"]
    delay_s: float = 0.0
    reason: str = ""


def retry_delay(policy: RetryPolicy, failures: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before the attempt that follows the `failures`-th counted failure."""
    if not policy.enabled or failures <= 0:
        return 0.0
    if policy.strategy == "exponential":
        delay = policy.initial_delay * (2 ** (failures - 1))
    elif policy.strategy == "linear":
        delay = policy.initial_delay * failures
    else:
        delay = policy.initial_delay
    delay = min(delay, policy.max_delay)
    if policy.jitter:
        # "Full jitter": spread retries of many steps so they do not start in lock-step.
        delay = (rng or random).uniform(delay / 2, delay)
    return delay


def _retryable(breaker: BreakerPolicy, output: str) -> bool:
    if not breaker.error_patterns:
        return True
    return any(re.search(pattern, output) for pattern in breaker.error_patterns)


def decide_after_failure(step: Step, state: StepState) -> Decision:
    """Decide what a step in the `failed` state does next."""
    breaker = step.circuit_breaker
    if state.last_reason in UNCOUNTED_REASONS:
        # The orchestrator or an operator stopped the attempt; the step itself did not fail.
        return Decision("retry", 0.0, f"{state.last_reason} attempt is retried")
    if state.trial:
        return Decision("trip", reason="trial_failed")
    if not _retryable(breaker, state.last_error):
        return Decision("trip", reason="not_retryable")
    repeated = breaker.max_error_repeats is not None and state.repeats >= breaker.max_error_repeats
    exhausted = state.counted_failures >= breaker.max_attempts
    if repeated or exhausted:
        reason = "error_repeats" if repeated else "max_attempts"
        if breaker.cooldown_seconds > 0:
            return Decision("open_breaker", breaker.cooldown_seconds, reason)
        return Decision("trip", reason=reason)
    return Decision("retry", retry_delay(step.retry, state.counted_failures), "retry")
