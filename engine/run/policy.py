"""What happens after an attempt fails: retry after a delay, open the breaker, or trip the step.

Pure decisions over the step's folded state and its policies, so replay and resume reach the same
decision the original reactor did (jitter is drawn once and then recorded in the event).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from stepledger.events.state import UNCOUNTED_REASONS, StepState

from ..workstream.limits import PATTERN_TIMEOUT_S
from ..workstream.model import BreakerPolicy, RetryPolicy, Step

if TYPE_CHECKING:
    import random


@dataclass(frozen=True)
class Decision:
    """The verdict on a failed step: `retry` after `delay_s`, `open_breaker` until a trial, or `trip`."""

    kind: Literal["retry", "open_breaker", "trip"]
    delay_s: float = 0.0
    reason: str = ""
    warning: str | None = None  # e.g. an error pattern that ran out of time


def retry_delay(policy: RetryPolicy, failures: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before the attempt that follows the `failures`-th counted failure."""
    if not policy.enabled or failures <= 0:
        return 0.0
    if policy.strategy == "exponential":
        # The exponent is capped: 2 ** 1024 no longer converts to a float, and 2 ** 64 seconds is
        # past any max_delay anyway.
        delay = policy.initial_delay * (2 ** min(failures - 1, 64))
    elif policy.strategy == "linear":
        delay = policy.initial_delay * failures
    else:
        delay = policy.initial_delay
    delay = min(delay, policy.max_delay)
    if policy.jitter:
        # "Full jitter": spread retries of many steps so they do not start in lock-step. The module
        # is imported here, by the few runs that draw: every other run starts without it.
        import random

        delay = (rng or random).uniform(delay / 2, delay)
    return delay


def _retryable(breaker: BreakerPolicy, output: str) -> tuple[bool, list[str]]:
    """Whether a pattern matches `output`, and the patterns that ran out of time (counted as no match).

    Patterns are the user's: one that backtracks (`(a+)+$`) could search for hours inside the
    reactor, past its lease and deaf to signals, so each search has PATTERN_TIMEOUT_S.
    """
    if not breaker.error_patterns:
        return True, []
    import regex  # only for steps with error_patterns: `re` cannot stop a search, `regex` can

    slow: list[str] = []
    for pattern in breaker.error_patterns:
        try:
            if regex.search(pattern, output, timeout=PATTERN_TIMEOUT_S):
                return True, slow
        except TimeoutError:
            slow.append(pattern)
    return False, slow


def slow_pattern_warning(step_id: str, patterns: list[str]) -> str | None:
    """The line that says which error_patterns ran out of time on a step's output."""
    if not patterns:
        return None
    shown = ", ".join(repr(p) for p in patterns)
    return (f"warning: step {step_id}: error_patterns {shown} searched its output for over "
            f"{PATTERN_TIMEOUT_S:g}s and counted as not matching; simplify the pattern "
            "(nested repeats such as (a+)+ backtrack)")  # fmt: skip


def decide_after_failure(step: Step, state: StepState) -> Decision:
    """Decide what a step in the `failed` state does next."""
    breaker = step.circuit_breaker
    if state.last_reason in UNCOUNTED_REASONS:
        # The orchestrator or an operator stopped the attempt; the step itself did not fail.
        return Decision("retry", 0.0, f"{state.last_reason} attempt is retried")
    if state.trial:
        return Decision("trip", reason="trial_failed")
    retryable, slow = _retryable(breaker, state.last_error)
    warning = slow_pattern_warning(step.id, slow)
    if not retryable:
        return Decision("trip", reason="not_retryable", warning=warning)
    repeated = breaker.max_error_repeats is not None and state.repeats >= breaker.max_error_repeats
    exhausted = state.counted_failures >= breaker.max_attempts
    if repeated or exhausted:
        reason = "error_repeats" if repeated else "max_attempts"
        if breaker.cooldown_seconds > 0:
            return Decision("open_breaker", breaker.cooldown_seconds, reason, warning)
        return Decision("trip", reason=reason, warning=warning)
    return Decision("retry", retry_delay(step.retry, state.counted_failures), "retry", warning)
