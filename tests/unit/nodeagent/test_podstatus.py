from typing import Any

import pytest

from kiln.devcluster.nodeagent.podstatus import (
    ContainerView,
    Running,
    Terminated,
    Waiting,
    pod_phase,
    pod_status,
    termination_message,
)

pytestmark = pytest.mark.unit

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:00:05Z"


def running(name: str = "main", ready: bool = True) -> ContainerView:
    return ContainerView(name, "img", Running(T0), ready=ready, started=True)


def exited(code: int, name: str = "main") -> ContainerView:
    return ContainerView(
        name, "img", Terminated(code, "Completed" if code == 0 else "Error", T0, T1)
    )


def crashlooping(name: str = "main") -> ContainerView:
    return ContainerView(
        name, "img", Waiting("CrashLoopBackOff"), last_state=Terminated(1, "Error", T0, T1)
    )


def waiting(name: str = "main") -> ContainerView:
    return ContainerView(name, "img", Waiting("ContainerCreating"))


@pytest.mark.parametrize(
    ("policy", "views", "phase"),
    [
        ("Always", [waiting()], "Pending"),
        ("Always", [running()], "Running"),
        ("Never", [exited(0)], "Succeeded"),
        ("Never", [exited(3)], "Failed"),
        ("OnFailure", [exited(0)], "Succeeded"),
        ("OnFailure", [crashlooping()], "Running"),
        ("Always", [exited(0)], "Running"),
        ("Always", [crashlooping()], "Running"),
        ("Never", [exited(0, "a"), running(name="b")], "Running"),
        ("Never", [exited(0, "a"), exited(1, "b")], "Failed"),
    ],
)
def test_phase_follows_kubelet(policy: str, views: list[ContainerView], phase: str) -> None:
    assert pod_phase(policy, [], views) == phase


def test_init_containers_keep_the_pod_pending() -> None:
    assert pod_phase("Always", [running("init")], [waiting()]) == "Pending"
    assert pod_phase("Always", [exited(0, "init")], [running()]) == "Running"


def test_failed_init_container_fails_a_never_pod() -> None:
    assert pod_phase("Never", [exited(1, "init")], [waiting()]) == "Failed"
    assert pod_phase("OnFailure", [crashlooping("init")], [waiting()]) == "Pending"


def test_deleted_pod_ends_succeeded_or_failed() -> None:
    assert pod_phase("Always", [], [exited(0)], terminal=True) == "Succeeded"
    assert pod_phase("Always", [], [exited(143)], terminal=True) == "Failed"


def _status(
    pod: dict[str, Any], views: list[ContainerView], now: str = T1, **kw: Any
) -> dict[str, Any]:
    return pod_status(
        pod,
        [],
        views,
        pod_ip="10.244.0.5",
        host_ip="10.244.0.1",
        start_time=T0,
        sandbox_ready=True,
        now=now,
        **kw,
    )


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_ready_pod_status() -> None:
    pod = {"spec": {"containers": [{"name": "main"}]}, "status": {}}
    status = _status(pod, [running()])
    assert status["phase"] == "Running"
    assert status["podIP"] == "10.244.0.5" and status["podIPs"] == [{"ip": "10.244.0.5"}]
    assert status["hostIP"] == "10.244.0.1" and status["startTime"] == T0
    by_type = conditions(status)
    for kind in (
        "PodScheduled",
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
    ):
        assert by_type[kind]["status"] == "True"
    assert status["containerStatuses"][0]["state"] == {"running": {"startedAt": T0}}


def test_unready_container_names_itself() -> None:
    status = _status({"spec": {}, "status": {}}, [running(ready=False)])
    ready = conditions(status)["Ready"]
    assert ready["status"] == "False"
    assert ready["reason"] == "ContainersNotReady"
    assert ready["message"] == "containers with unready status: [main]"


def test_transition_time_kept_while_status_unchanged() -> None:
    first = _status({"spec": {}, "status": {}}, [running()], now=T0)
    again = _status({"spec": {}, "status": first}, [running()], now=T1)
    assert conditions(again)["Ready"]["lastTransitionTime"] == T0
    flipped = _status({"spec": {}, "status": first}, [running(ready=False)], now=T1)
    assert conditions(flipped)["Ready"]["lastTransitionTime"] == T1


def test_conditions_set_by_others_are_kept() -> None:
    gate = {"type": "kiln.dev/canary", "status": "True", "lastTransitionTime": T0}
    pod = {
        "spec": {"readinessGates": [{"conditionType": "kiln.dev/canary"}]},
        "status": {"conditions": [gate]},
    }
    status = _status(pod, [running()])
    assert conditions(status)["kiln.dev/canary"] == gate
    assert conditions(status)["Ready"]["status"] == "True"


def test_unmet_readiness_gate_keeps_pod_unready() -> None:
    pod = {"spec": {"readinessGates": [{"conditionType": "x"}]}, "status": {}}
    ready = conditions(_status(pod, [running()]))["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "ReadinessGatesNotReady"


def test_completed_pod_is_not_ready_with_reason_pod_completed() -> None:
    status = _status({"spec": {"restartPolicy": "Never"}, "status": {}}, [exited(0)])
    assert status["phase"] == "Succeeded"
    assert conditions(status)["Ready"]["reason"] == "PodCompleted"
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"


def test_terminal_phase_never_changes() -> None:
    pod = {"spec": {"restartPolicy": "Always"}, "status": {"phase": "Failed"}}
    assert _status(pod, [running()])["phase"] == "Failed"


def test_crash_loop_shows_last_state() -> None:
    status = _status({"spec": {}, "status": {}}, [crashlooping()])
    container = status["containerStatuses"][0]
    assert container["state"] == {"waiting": {"reason": "CrashLoopBackOff"}}
    assert container["lastState"]["terminated"]["exitCode"] == 1


def test_termination_message_from_file_is_capped() -> None:
    assert termination_message("done", "File", 0, "log") == "done"
    assert len(termination_message("x" * 5000, "File", 0, "")) == 4096


def test_fallback_to_logs_only_on_error_without_file() -> None:
    assert termination_message("", "FallbackToLogsOnError", 1, "boom\n") == "boom\n"
    assert termination_message("", "FallbackToLogsOnError", 0, "fine\n") == ""
    assert termination_message("file", "FallbackToLogsOnError", 1, "boom") == "file"
    assert termination_message("", "FallbackToLogsOnError", 1, "a" * 5000 + "END").endswith("END")
    assert termination_message("", "File", 1, "boom") == ""
