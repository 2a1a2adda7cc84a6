import pytest

from kiln.devcluster.nodeagent.backoff import next_crash_count, restart_delay, should_restart

pytestmark = pytest.mark.unit


def test_first_restart_is_immediate_then_doubles_from_ten_seconds() -> None:
    assert [restart_delay(n) for n in range(1, 6)] == [0, 10, 20, 40, 80]


def test_delay_is_capped_at_five_minutes() -> None:
    assert restart_delay(7) == 300
    assert restart_delay(50) == 300


def test_long_run_resets_the_back_off() -> None:
    assert next_crash_count(6, run_seconds=5) == 7
    assert next_crash_count(6, run_seconds=601) == 1


@pytest.mark.parametrize(
    ("policy", "code", "restart"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 2, True),
        ("Never", 1, False),
    ],
)
def test_restart_policy(policy: str, code: int, restart: bool) -> None:
    assert should_restart(policy, code) is restart
