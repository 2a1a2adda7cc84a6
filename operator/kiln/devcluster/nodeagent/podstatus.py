"""Pod status from container states, following kubelet's rules (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TERMINATION_MESSAGE_LIMIT = 4096


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Running:
    started_at: str


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str
    started_at: str
    finished_at: str
    message: str = ""
    signal: int | None = None


State = Waiting | Running | Terminated


@dataclass(frozen=True)
class ContainerView:
    """What the runtime knows about one container of the pod."""

    name: str
    image: str
    state: State
    container_id: str = ""
    last_state: Terminated | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False


def exit_reason(exit_code: int, oom_killed: bool = False) -> str:
    """The terminated reason; `OOMKilled` when the container's cgroup counted an OOM kill
    during the attempt (as containerd reports it, whatever the exit code)."""
    if oom_killed:
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"


def termination_message(file_text: str, policy: str, exit_code: int, log_tail: str) -> str:
    """The message kubelet reads after exit; FallbackToLogsOnError uses the log tail.

    At most 4096 bytes: the head of the file, or the end of the log.
    """
    from_logs = not file_text.strip() and policy == "FallbackToLogsOnError" and exit_code != 0
    encoded = (log_tail if from_logs else file_text).encode()
    if len(encoded) > TERMINATION_MESSAGE_LIMIT:
        if from_logs:
            encoded = encoded[-TERMINATION_MESSAGE_LIMIT:]
        else:
            encoded = encoded[:TERMINATION_MESSAGE_LIMIT]
    return encoded.decode("utf-8", "ignore")


def _state_dict(state: State) -> dict[str, Any]:
    if isinstance(state, Waiting):
        waiting: dict[str, Any] = {"reason": state.reason}
        if state.message:
            waiting["message"] = state.message
        return {"waiting": waiting}
    if isinstance(state, Running):
        return {"running": {"startedAt": state.started_at}}
    terminated: dict[str, Any] = {
        "exitCode": state.exit_code,
        "reason": state.reason,
        "startedAt": state.started_at,
        "finishedAt": state.finished_at,
    }
    if state.message:
        terminated["message"] = state.message
    if state.signal is not None:
        terminated["signal"] = state.signal
    return {"terminated": terminated}


def container_status(view: ContainerView) -> dict[str, Any]:
    status: dict[str, Any] = {
        "name": view.name,
        "image": view.image,
        "imageID": view.image,
        "state": _state_dict(view.state),
        "lastState": _state_dict(view.last_state) if view.last_state else {},
        "ready": view.ready,
        "restartCount": view.restart_count,
        "started": view.started,
    }
    if view.container_id:
        status["containerID"] = view.container_id
    return status


def pod_phase(
    restart_policy: str,
    init_views: Sequence[ContainerView],
    views: Sequence[ContainerView],
    terminal: bool = False,
) -> str:
    """Kubelet's getPhase: `terminal` means the pod is being torn down for good."""
    pending_init = failed_init = 0
    for view in init_views:
        state = view.state
        if isinstance(state, Terminated):
            failed_init += state.exit_code != 0
        elif isinstance(state, Waiting) and view.last_state is not None:
            failed_init += view.last_state.exit_code != 0
        else:
            pending_init += 1
    running = waiting = stopped = succeeded = 0
    for view in views:
        state = view.state
        if isinstance(state, Running):
            running += 1
        elif isinstance(state, Terminated):
            stopped += 1
            succeeded += state.exit_code == 0
        elif view.last_state is not None:
            stopped += 1
        else:
            waiting += 1
    if failed_init and restart_policy == "Never":
        return "Failed"
    if terminal and running == 0:
        if stopped and stopped == succeeded == len(views):
            return "Succeeded"
        return "Failed"
    if pending_init or waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(
    kind: str, ok: bool, previous: Mapping[str, Mapping[str, Any]], now: str,
    reason: str = "", message: str = "",
) -> dict[str, Any]:  # fmt: skip
    status = "True" if ok else "False"
    before = previous.get(kind)
    changed = before is None or before.get("status") != status
    condition: dict[str, Any] = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": now
        if changed or before is None
        else before.get("lastTransitionTime"),
    }
    if not ok and reason:
        condition["reason"] = reason
    if not ok and message:
        condition["message"] = message
    return condition


def _names(views: Sequence[ContainerView]) -> str:
    return "[" + " ".join(v.name for v in views) + "]"


def pod_conditions(
    pod: Mapping[str, Any],
    phase: str,
    sandbox_ready: bool,
    init_views: Sequence[ContainerView],
    views: Sequence[ContainerView],
    now: str,
) -> list[dict[str, Any]]:
    existing = (pod.get("status") or {}).get("conditions") or []
    previous = {c["type"]: c for c in existing}
    incomplete_init = [
        v for v in init_views
        if not (isinstance(v.state, Terminated) and v.state.exit_code == 0)
    ]  # fmt: skip
    unready = [v for v in views if not v.ready]
    completed = phase in ("Succeeded", "Failed")
    gates = [g["conditionType"] for g in (pod.get("spec") or {}).get("readinessGates") or []]
    gates_ready = all((previous.get(g) or {}).get("status") == "True" for g in gates)

    ready_reason = "PodCompleted" if completed else "ContainersNotReady"
    ready_message = "" if completed else f"containers with unready status: {_names(unready)}"
    containers_ready = not unready and not completed
    if containers_ready and not gates_ready:
        ready = _condition("Ready", False, previous, now, "ReadinessGatesNotReady",
                           "the status of pod readiness gate is not \"True\"")  # fmt: skip
    else:
        ready = _condition("Ready", containers_ready, previous, now, ready_reason, ready_message)
    managed = [
        _condition("PodReadyToStartContainers", sandbox_ready, previous, now),
        _condition(
            "Initialized",
            not incomplete_init or (completed and not init_views),
            previous,
            now,
            "ContainersNotInitialized",
            f"containers with incomplete status: {_names(incomplete_init)}",
        ),
        ready,
        _condition("ContainersReady", containers_ready, previous, now, ready_reason, ready_message),
    ]
    managed_types = {c["type"] for c in managed}
    others = [c for c in existing if c["type"] not in managed_types]
    if not any(c["type"] == "PodScheduled" for c in others):
        others.insert(0, _condition("PodScheduled", True, previous, now))
    return others + managed


def pod_status(
    pod: Mapping[str, Any],
    init_views: Sequence[ContainerView],
    views: Sequence[ContainerView],
    *,
    pod_ip: str | None,
    host_ip: str,
    start_time: str,
    sandbox_ready: bool,
    now: str,
    terminal: bool = False,
) -> dict[str, Any]:
    spec = pod.get("spec") or {}
    previous_phase = (pod.get("status") or {}).get("phase")
    phase = pod_phase(spec.get("restartPolicy", "Always"), init_views, views, terminal)
    if previous_phase in ("Succeeded", "Failed"):
        phase = previous_phase  # terminal phases never change
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": pod_conditions(pod, phase, sandbox_ready, init_views, views, now),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "containerStatuses": [container_status(v) for v in views],
    }
    if init_views:
        status["initContainerStatuses"] = [container_status(v) for v in init_views]
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status
