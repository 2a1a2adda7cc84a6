"""Setting up a pod's volumes on the host (the impure side of `volumes.py`).

Every volume becomes a host directory (or file) that containers bind-mount: emptyDir and
the file-backed kinds live under the pod's state dir; hostPath and PVC-bound PVs resolve
to their host path. Files are replaced atomically so a refreshed token or ConfigMap is
seen by containers that mounted the whole volume.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln.devcluster.nodeagent import volumes
from kiln.devcluster.nodeagent.apiclient import ApiClient, ApiError
from kiln.devcluster.nodeagent.fieldrefs import PodAddresses
from kiln.devcluster.nodeagent.volumes import TokenRequest, VolumeError, VolumeInputs

log = logging.getLogger(__name__)
TOKEN_REFRESH_FRACTION = 0.8  # kubelet renews a projected token after 80% of its lifetime


@dataclass
class PodVolumes:
    """The host side of a pod's volumes; `refresh_at` is when a token needs renewing."""

    root: Path
    roots: dict[str, str] = field(default_factory=dict)
    refresh_at: float = float("inf")
    tokens: dict[TokenRequest, tuple[str, float]] = field(default_factory=dict)


async def fetch_token(
    api: ApiClient, pod: Mapping[str, Any], request: TokenRequest
) -> tuple[str, float]:
    metadata = pod["metadata"]
    spec: dict[str, Any] = {
        "expirationSeconds": request.expiration_seconds,
        "boundObjectRef": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": metadata["name"],
            "uid": metadata["uid"],
        },
    }
    if request.audience:
        spec["audiences"] = [request.audience]
    account = pod["spec"].get("serviceAccountName") or "default"
    result = await api.request(
        "POST",
        f"/api/v1/namespaces/{metadata['namespace']}/serviceaccounts/{account}/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
    )
    issued_for = request.expiration_seconds
    return result["status"]["token"], time.time() + issued_for * TOKEN_REFRESH_FRACTION


async def _gather_inputs(
    api: ApiClient, pod: Mapping[str, Any], state: PodVolumes, allocatable: Mapping[str, str]
) -> VolumeInputs:
    """The ConfigMaps, Secrets and tokens the volumes need, requested concurrently."""
    namespace = pod["metadata"]["namespace"]
    configmap_names: set[str] = set()
    secret_names: set[str] = set()
    requests: list[TokenRequest] = []
    for volume in pod["spec"].get("volumes") or []:
        names_cm, names_secret, token_requests = volumes.references(volume)
        configmap_names |= names_cm
        secret_names |= names_secret
        requests += [r for r in token_requests if r not in requests]
    due = [r for r in requests if (token := state.tokens.get(r)) is None or token[1] <= time.time()]
    cm_order, secret_order = sorted(configmap_names), sorted(secret_names)

    async def token_for(request: TokenRequest) -> tuple[str, float]:
        try:
            return await fetch_token(api, pod, request)
        except ApiError as exc:
            raise VolumeError(f"cannot issue a service account token: {exc}") from exc

    results: list[Any] = await asyncio.gather(
        *(api.get_or_none(f"/api/v1/namespaces/{namespace}/configmaps/{n}") for n in cm_order),
        *(api.get_or_none(f"/api/v1/namespaces/{namespace}/secrets/{n}") for n in secret_order),
        *(token_for(r) for r in due),
        return_exceptions=True,
    )
    issued = results[len(cm_order) + len(secret_order) :]
    for request, issued_token in zip(due, issued, strict=True):
        if isinstance(issued_token, tuple):
            state.tokens[request] = issued_token
    for result in results:  # the first failure, as the sequential reads raised it
        if isinstance(result, BaseException):
            raise result
    configmaps = {
        name: volumes.configmap_data(found)
        for name, found in zip(cm_order, results, strict=False)
        if found is not None
    }
    rest = results[len(cm_order) :]
    secrets = {
        name: volumes.secret_data(found)
        for name, found in zip(secret_order, rest, strict=False)
        if found is not None
    }
    state.refresh_at = min((t[1] for t in state.tokens.values()), default=float("inf"))
    return VolumeInputs(
        configmaps=configmaps,
        secrets=secrets,
        tokens={request: token for request, (token, _) in state.tokens.items()},
        node_allocatable=allocatable,
    )


def write_files(directory: Path, files: list[volumes.FileSpec], gid: int | None) -> None:
    """Write (or replace) the volume's files; each is renamed into place atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for spec in files:
        target = directory / spec.path
        target.parent.mkdir(parents=True, exist_ok=True)
        wanted.add(target)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(spec.content)
        mode = spec.mode
        if gid is not None:
            os.chown(tmp, -1, gid)
            mode |= 0o440  # kubelet makes files group-readable for fsGroup
        tmp.chmod(mode)
        os.replace(tmp, target)
    for existing in directory.rglob("*"):
        if existing.is_file() and existing not in wanted:
            existing.unlink()


def _own_for_group(path: Path, gid: int) -> None:
    """fsGroup: the group owns the volume and new files inherit it (setgid dirs)."""
    for current in [path, *path.rglob("*")]:
        os.chown(current, -1, gid, follow_symlinks=False)
        if current.is_dir() and not current.is_symlink():
            current.chmod(current.stat().st_mode | 0o2070)


async def _persistent_volume_path(api: ApiClient, namespace: str, claim_name: str) -> str:
    claim = await api.get_or_none(
        f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim_name}"
    )
    if claim is None:
        raise VolumeError(f'persistentvolumeclaim "{claim_name}" not found')
    volume_name = (claim.get("spec") or {}).get("volumeName")
    if not volume_name or (claim.get("status") or {}).get("phase") != "Bound":
        raise VolumeError(f'persistentvolumeclaim "{claim_name}" is not bound')
    volume = await api.get_or_none(f"/api/v1/persistentvolumes/{volume_name}")
    if volume is None:
        raise VolumeError(f'persistentvolume "{volume_name}" not found')
    spec = volume.get("spec") or {}
    path = (spec.get("hostPath") or spec.get("local") or {}).get("path")
    if not path:
        raise VolumeError(f'persistentvolume "{volume_name}" is neither hostPath nor local')
    os.makedirs(path, exist_ok=True)
    return str(path)


def _host_path(source: Mapping[str, Any]) -> str:
    path = source["path"]
    kind = source.get("type") or ""
    if kind == "DirectoryOrCreate":
        os.makedirs(path, mode=0o755, exist_ok=True)
    elif kind == "FileOrCreate":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).touch(exist_ok=True)
    elif kind == "Directory" and not os.path.isdir(path):
        raise VolumeError(f"hostPath {path} is not a directory")
    elif kind == "File" and not os.path.isfile(path):
        raise VolumeError(f"hostPath {path} is not a file")
    elif kind == "Socket" and not Path(path).is_socket():
        raise VolumeError(f"hostPath {path} is not a socket")
    elif not os.path.exists(path) and kind:
        raise VolumeError(f"hostPath {path} does not exist")
    return str(path)


async def setup_volumes(
    api: ApiClient,
    pod: Mapping[str, Any],
    state: PodVolumes,
    addresses: PodAddresses,
    allocatable: Mapping[str, str],
) -> None:
    """Create or refresh every volume of the pod; raises VolumeError to retry later."""
    spec = pod["spec"]
    namespace = pod["metadata"]["namespace"]
    fs_group = (spec.get("securityContext") or {}).get("fsGroup")
    inputs = await _gather_inputs(api, pod, state, allocatable)
    for volume in spec.get("volumes") or []:
        name = volume["name"]
        kind = volumes.volume_kind(volume)
        target = state.root / kind / name
        if kind == "emptyDir":
            if not target.exists():
                target.mkdir(parents=True)
                target.chmod(0o777)
                if fs_group is not None:
                    _own_for_group(target, int(fs_group))
            state.roots[name] = str(target)
        elif kind in volumes.FILE_BACKED:
            files = volumes.render_files(volume, pod, addresses, inputs)
            write_files(target, files, int(fs_group) if fs_group is not None else None)
            state.roots[name] = str(target)
        elif kind == "hostPath":
            state.roots[name] = _host_path(volume["hostPath"])
        elif kind == "persistentVolumeClaim":
            claim = volume["persistentVolumeClaim"]["claimName"]
            if name not in state.roots:
                path = await _persistent_volume_path(api, namespace, claim)
                if fs_group is not None:
                    _own_for_group(Path(path), int(fs_group))
                state.roots[name] = path


def remove_volumes(state: PodVolumes) -> None:
    shutil.rmtree(state.root, ignore_errors=True)
