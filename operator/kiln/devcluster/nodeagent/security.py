"""Identity and privileges of a container process from its securityContext (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class SecurityError(ValueError):
    """Kubelet's CreateContainerConfigError for an impossible identity."""


@dataclass(frozen=True)
class ProcessIdentity:
    uid: int
    gid: int
    groups: tuple[int, ...]
    no_new_privileges: bool
    drop_all_capabilities: bool
    read_only_root: bool


def _pick(key: str, container_sc: Mapping[str, Any], pod_sc: Mapping[str, Any]) -> Any:
    value = container_sc.get(key)
    return pod_sc.get(key) if value is None else value


def process_identity(
    pod_spec: Mapping[str, Any], container: Mapping[str, Any], image_user: int | None
) -> ProcessIdentity:
    """Container settings override the pod's; the image's USER applies when neither sets one."""
    pod_sc = pod_spec.get("securityContext") or {}
    container_sc = container.get("securityContext") or {}
    uid = _pick("runAsUser", container_sc, pod_sc)
    if uid is None:
        uid = image_user if image_user is not None else 0
    gid = _pick("runAsGroup", container_sc, pod_sc)
    if _pick("runAsNonRoot", container_sc, pod_sc) and int(uid) == 0:
        raise SecurityError("container has runAsNonRoot and image will run as root")
    groups: list[int] = []
    for group in [pod_sc.get("fsGroup"), *(pod_sc.get("supplementalGroups") or [])]:
        if group is not None and int(group) not in groups:
            groups.append(int(group))
    dropped = (container_sc.get("capabilities") or {}).get("drop") or []
    return ProcessIdentity(
        uid=int(uid),
        gid=int(gid) if gid is not None else 0,
        groups=tuple(groups),
        no_new_privileges=container_sc.get("allowPrivilegeEscalation") is False,
        drop_all_capabilities="ALL" in dropped,
        read_only_root=bool(container_sc.get("readOnlyRootFilesystem")),
    )
