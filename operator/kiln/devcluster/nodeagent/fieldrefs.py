"""The downward API: pod fields and container resources as strings (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kiln.devcluster.nodeagent.quantity import ceil_ratio, parse_quantity

_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")


@dataclass(frozen=True)
class PodAddresses:
    pod_ip: str
    host_ip: str


class FieldRefError(ValueError):
    pass


def _format_map(values: Mapping[str, str]) -> str:
    """How a whole label/annotation map appears in a downward API file."""
    lines = []
    for key in sorted(values):
        escaped = values[key].replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        lines.append(f'{key}="{escaped}"')
    return "\n".join(lines)


def field_value(pod: Mapping[str, Any], path: str, addresses: PodAddresses) -> str:
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    match = _SUBSCRIPT.match(path)
    if match:
        return str((metadata.get(match.group(1)) or {}).get(match.group(2), ""))
    simple: dict[str, Any] = {
        "metadata.name": metadata.get("name", ""),
        "metadata.namespace": metadata.get("namespace", ""),
        "metadata.uid": metadata.get("uid", ""),
        "metadata.labels": _format_map(metadata.get("labels") or {}),
        "metadata.annotations": _format_map(metadata.get("annotations") or {}),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": addresses.pod_ip,
        "status.podIPs": addresses.pod_ip,
        "status.hostIP": addresses.host_ip,
        "status.hostIPs": addresses.host_ip,
    }
    if path not in simple:
        raise FieldRefError(f"unsupported fieldRef fieldPath {path!r}")
    return str(simple[path])


def resource_value(
    container: Mapping[str, Any],
    resource: str,
    divisor: str | int | None,
    node_allocatable: Mapping[str, str],
) -> str:
    """`limits.cpu` & co.; an unset limit is the node's allocatable, like kubelet."""
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not name:
        raise FieldRefError(f"unsupported resourceFieldRef resource {resource!r}")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None and kind == "requests":
        raw = (resources.get("limits") or {}).get(name)
    if raw is None:
        raw = node_allocatable.get(name, "0") if kind == "limits" else "0"
    try:
        divisor_value = parse_quantity(divisor if divisor not in (None, "") else "1")
        if divisor_value == 0:  # the apiserver stores an unset divisor as "0"
            divisor_value = parse_quantity("1")
        return str(ceil_ratio(parse_quantity(raw), divisor_value))
    except ValueError as exc:
        raise FieldRefError(f"resourceFieldRef {resource}: {exc}") from exc
