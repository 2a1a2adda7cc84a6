"""What each pod volume looks like on disk and where it is mounted (pure).

The adapter (`podvolumes.py`) fetches the referenced ConfigMaps, Secrets and tokens,
asks this module for the files to write, and mounts the resulting directories.
"""

from __future__ import annotations

import base64
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kiln.devcluster.nodeagent.envvars import expand
from kiln.devcluster.nodeagent.fieldrefs import (
    FieldRefError,
    PodAddresses,
    field_value,
    resource_value,
)

DEFAULT_MODE = 0o644
DEFAULT_TOKEN_SECONDS = 3600


class VolumeError(ValueError):
    """The volume cannot be set up (kubelet: FailedMount); retried later."""


@dataclass(frozen=True)
class FileSpec:
    path: str  # relative to the volume root
    content: bytes
    mode: int


@dataclass(frozen=True)
class TokenRequest:
    audience: str | None
    expiration_seconds: int


@dataclass(frozen=True)
class VolumeInputs:
    """API objects referenced by the pod's volumes; a missing object is absent."""

    configmaps: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)
    secrets: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)
    tokens: Mapping[TokenRequest, str] = field(default_factory=dict)
    node_allocatable: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Mount:
    source: str  # host path
    target: str  # path inside the container
    read_only: bool


FILE_BACKED = ("configMap", "secret", "downwardAPI", "projected")


def volume_kind(volume: Mapping[str, Any]) -> str:
    for kind in ("emptyDir", *FILE_BACKED, "hostPath", "persistentVolumeClaim"):
        if kind in volume:
            return kind
    supported = ", ".join(("emptyDir", *FILE_BACKED, "hostPath", "persistentVolumeClaim"))
    raise VolumeError(f'volume "{volume.get("name")}": unsupported type (supported: {supported})')


def configmap_data(configmap: Mapping[str, Any]) -> dict[str, bytes]:
    data = {k: v.encode() for k, v in (configmap.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (configmap.get("binaryData") or {}).items()})
    return data


def secret_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def references(volume: Mapping[str, Any]) -> tuple[set[str], set[str], set[TokenRequest]]:
    """(configmap names, secret names, token requests) a volume needs."""
    configmaps: set[str] = set()
    secrets: set[str] = set()
    tokens: set[TokenRequest] = set()
    if "configMap" in volume:
        configmaps.add(volume["configMap"].get("name", ""))
    if "secret" in volume:
        secrets.add(volume["secret"].get("secretName", ""))
    for source in (volume.get("projected") or {}).get("sources") or []:
        if "configMap" in source:
            configmaps.add(source["configMap"].get("name", ""))
        if "secret" in source:
            secrets.add(source["secret"].get("name", ""))
        if "serviceAccountToken" in source:
            tokens.add(token_request(source["serviceAccountToken"]))
    return configmaps, secrets, tokens


def token_request(source: Mapping[str, Any]) -> TokenRequest:
    return TokenRequest(
        audience=source.get("audience") or None,
        expiration_seconds=int(source.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS),
    )


def _safe_relative(path: str, what: str) -> str:
    normal = posixpath.normpath(path)
    if path.startswith("/") or normal == ".." or normal.startswith("../") or not path:
        raise VolumeError(f"{what}: path {path!r} must be relative and stay inside the volume")
    return normal


def project_keys(
    data: Mapping[str, bytes] | None,
    items: Sequence[Mapping[str, Any]] | None,
    default_mode: int,
    description: str,
    optional: bool,
) -> list[FileSpec]:
    if data is None:
        if optional:
            return []
        raise VolumeError(f"{description} not found")
    if not items:
        return [FileSpec(_safe_relative(k, description), v, default_mode) for k, v in data.items()]
    files = []
    for item in items:
        key = item["key"]
        if key not in data:
            if optional:
                continue
            raise VolumeError(f"{description}: key {key!r} not found")
        mode = item.get("mode")
        files.append(
            FileSpec(
                _safe_relative(item.get("path", key), description),
                data[key],
                default_mode if mode is None else int(mode),
            )
        )
    return files


def downward_files(
    items: Sequence[Mapping[str, Any]],
    pod: Mapping[str, Any],
    addresses: PodAddresses,
    default_mode: int,
    node_allocatable: Mapping[str, str],
) -> list[FileSpec]:
    files = []
    containers = {c["name"]: c for c in (pod.get("spec") or {}).get("containers") or []}
    for item in items:
        path = _safe_relative(item["path"], "downwardAPI")
        try:
            if "fieldRef" in item:
                value = field_value(pod, item["fieldRef"]["fieldPath"], addresses)
            elif "resourceFieldRef" in item:
                ref = item["resourceFieldRef"]
                container = containers.get(ref.get("containerName", ""))
                if container is None:
                    raise VolumeError(f"downwardAPI {path}: unknown container")
                value = resource_value(
                    container, ref["resource"], ref.get("divisor"), node_allocatable
                )
            else:
                raise VolumeError(f"downwardAPI {path}: needs fieldRef or resourceFieldRef")
        except FieldRefError as exc:
            raise VolumeError(f"downwardAPI {path}: {exc}") from exc
        mode = item.get("mode")
        files.append(FileSpec(path, value.encode(), default_mode if mode is None else int(mode)))
    return files


def render_files(
    volume: Mapping[str, Any],
    pod: Mapping[str, Any],
    addresses: PodAddresses,
    inputs: VolumeInputs,
) -> list[FileSpec]:
    """The files of a configMap, secret, downwardAPI or projected volume."""
    kind = volume_kind(volume)
    source = volume[kind] or {}
    default_mode = int(source.get("defaultMode", DEFAULT_MODE))
    if kind == "configMap":
        name = source.get("name", "")
        return project_keys(
            inputs.configmaps.get(name),
            source.get("items"),
            default_mode,
            f'configmap "{name}"',
            bool(source.get("optional")),
        )
    if kind == "secret":
        name = source.get("secretName", "")
        return project_keys(
            inputs.secrets.get(name),
            source.get("items"),
            default_mode,
            f'secret "{name}"',
            bool(source.get("optional")),
        )
    if kind == "downwardAPI":
        return downward_files(
            source.get("items") or [], pod, addresses, default_mode, inputs.node_allocatable
        )
    if kind == "projected":
        return _projected(source, pod, addresses, inputs, default_mode)
    raise VolumeError(f'volume "{volume.get("name")}" of type {kind} has no files')


def _projected(
    source: Mapping[str, Any],
    pod: Mapping[str, Any],
    addresses: PodAddresses,
    inputs: VolumeInputs,
    default_mode: int,
) -> list[FileSpec]:
    files: list[FileSpec] = []
    for part in source.get("sources") or []:
        if "configMap" in part:
            ref = part["configMap"]
            name = ref.get("name", "")
            files += project_keys(
                inputs.configmaps.get(name),
                ref.get("items"),
                default_mode,
                f'configmap "{name}"',
                bool(ref.get("optional")),
            )
        elif "secret" in part:
            ref = part["secret"]
            name = ref.get("name", "")
            files += project_keys(
                inputs.secrets.get(name),
                ref.get("items"),
                default_mode,
                f'secret "{name}"',
                bool(ref.get("optional")),
            )
        elif "downwardAPI" in part:
            files += downward_files(
                part["downwardAPI"].get("items") or [],
                pod,
                addresses,
                default_mode,
                inputs.node_allocatable,
            )
        elif "serviceAccountToken" in part:
            ref = part["serviceAccountToken"]
            token = inputs.tokens.get(token_request(ref))
            if token is None:
                raise VolumeError("service account token not available yet")
            files.append(
                FileSpec(_safe_relative(ref["path"], "token"), token.encode(), default_mode)
            )
    return files


def mount_plan(
    container: Mapping[str, Any],
    volume_roots: Mapping[str, str],
    env: Mapping[str, str],
) -> list[Mount]:
    """Bind mounts for a container, parents before children (`/data` before `/data/x`)."""
    mounts = []
    for volume_mount in container.get("volumeMounts") or []:
        name = volume_mount["name"]
        if name not in volume_roots:
            raise VolumeError(f'volumeMount "{name}": no such volume in the pod')
        source = volume_roots[name]
        sub_path = volume_mount.get("subPath") or ""
        if volume_mount.get("subPathExpr"):
            sub_path = expand(volume_mount["subPathExpr"], env)
        if sub_path:
            source = posixpath.join(source, _safe_relative(sub_path, f'volumeMount "{name}"'))
        target = posixpath.normpath(volume_mount["mountPath"])
        if not target.startswith("/"):
            raise VolumeError(f'volumeMount "{name}": mountPath must be absolute')
        mounts.append(Mount(source, target, bool(volume_mount.get("readOnly", False))))
    return sorted(mounts, key=lambda m: m.target.count("/"))
