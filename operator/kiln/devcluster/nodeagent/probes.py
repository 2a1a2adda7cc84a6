"""Probe bookkeeping: thresholds, delays and results as kubelet counts them (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class ProbeSettings:
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def from_spec(cls, probe: Mapping[str, Any]) -> ProbeSettings:
        return cls(
            initial_delay=float(probe.get("initialDelaySeconds", 0)),
            period=float(probe.get("periodSeconds", 10)),
            timeout=float(probe.get("timeoutSeconds", 1)),
            success_threshold=int(probe.get("successThreshold", 1)),
            failure_threshold=int(probe.get("failureThreshold", 3)),
        )


@dataclass(frozen=True)
class ProbeState:
    """`result` is None until the probe has an answer ("Unknown" in kubelet)."""

    result: bool | None
    successes: int = 0
    failures: int = 0


def initial_state(kind: str) -> ProbeState:
    """Readiness starts failed, liveness succeeded, startup unknown (as in kubelet)."""
    return ProbeState(result={"readiness": False, "liveness": True}.get(kind))


def record(state: ProbeState, settings: ProbeSettings, ok: bool) -> ProbeState:
    """Fold one probe outcome in; the result flips only after enough in a row."""
    if ok:
        successes = state.successes + 1
        result = True if successes >= settings.success_threshold else state.result
        return replace(state, result=result, successes=successes, failures=0)
    failures = state.failures + 1
    result = False if failures >= settings.failure_threshold else state.result
    return replace(state, result=result, successes=0, failures=failures)


def probe_action(probe: Mapping[str, Any]) -> str:
    for action in ("exec", "httpGet", "tcpSocket", "grpc"):
        if action in probe:
            return action
    raise ValueError("probe has no handler")


def resolve_port(port: int | str, container: Mapping[str, Any]) -> int:
    """A probe port may name one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"port {port!r} is not a named port of the container")


def http_url(probe: Mapping[str, Any], container: Mapping[str, Any], pod_ip: str) -> str:
    get = probe["httpGet"]
    host = get.get("host") or pod_ip
    scheme = str(get.get("scheme", "HTTP")).lower()
    path = get.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    return f"{scheme}://{host}:{resolve_port(get['port'], container)}{path}"


def http_ok(status_code: int) -> bool:
    return 200 <= status_code < 400
