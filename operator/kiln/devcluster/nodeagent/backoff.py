"""Kubelet's crash-loop back-off (pure).

Kubelet restarts a container the first time it exits without delay, then waits 10 s,
20 s, 40 s, ... capped at 5 minutes, counted from when the container finished. A
container that ran for 10 minutes (twice the cap) before exiting starts over.
"""

from __future__ import annotations

INITIAL_SECONDS = 10.0
MAX_SECONDS = 300.0
RESET_AFTER_SECONDS = 2 * MAX_SECONDS


def restart_delay(consecutive_crashes: int) -> float:
    """Seconds to wait before restart number `consecutive_crashes` (1 = the first restart)."""
    if consecutive_crashes <= 1:
        return 0.0
    return min(INITIAL_SECONDS * 2 ** (consecutive_crashes - 2), MAX_SECONDS)


def next_crash_count(previous_count: int, run_seconds: float) -> int:
    """How many consecutive crashes the back-off counts after a container exited."""
    if run_seconds >= RESET_AFTER_SECONDS:
        return 1
    return previous_count + 1


def should_restart(restart_policy: str, exit_code: int) -> bool:
    if restart_policy == "Always":
        return True
    if restart_policy == "OnFailure":
        return exit_code != 0
    return False
