"""A container's environment as kubelet builds it (pure).

Precedence, lowest first: service link variables, `envFrom` sources in order, `env`
entries in order. `$(VAR)` in `env` values refers to variables defined before it (and to
service variables); `command` and `args` see the final environment. `$$` escapes `$`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kiln.devcluster.nodeagent.fieldrefs import (
    FieldRefError,
    PodAddresses,
    field_value,
    resource_value,
)

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class EnvError(ValueError):
    """Kubelet's CreateContainerConfigError: a referenced object or key is missing."""


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion; unknown references stay as written."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "$" and i + 1 < len(text):
            following = text[i + 1]
            if following == "$":
                out.append("$")
                i += 2
                continue
            if following == "(":
                close = text.find(")", i + 2)
                if close != -1:
                    name = text[i + 2 : close]
                    out.append(variables.get(name, text[i : close + 1]))
                    i = close + 1
                    continue
        out.append(char)
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class EnvSources:
    """The objects a container's env may reference, fetched by the caller.

    A missing object is absent from the mapping; secret values are already decoded.
    """

    configmaps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    service_env: Mapping[str, str] = field(default_factory=dict)
    node_allocatable: Mapping[str, str] = field(default_factory=dict)


def referenced_objects(container: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """Names of (configmaps, secrets) the container's env and envFrom refer to."""
    configmaps: set[str] = set()
    secrets: set[str] = set()
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            configmaps.add(source["configMapRef"].get("name", ""))
        if "secretRef" in source:
            secrets.add(source["secretRef"].get("name", ""))
    for var in container.get("env") or []:
        value_from = var.get("valueFrom") or {}
        if "configMapKeyRef" in value_from:
            configmaps.add(value_from["configMapKeyRef"].get("name", ""))
        if "secretKeyRef" in value_from:
            secrets.add(value_from["secretKeyRef"].get("name", ""))
    return configmaps, secrets


def decode_secret_data(secret: Mapping[str, Any]) -> dict[str, str]:
    data = {
        k: base64.b64decode(v).decode("utf-8", "replace")
        for k, v in (secret.get("data") or {}).items()
    }
    data.update(secret.get("stringData") or {})
    return data


def _key_ref(
    kind: str, ref: Mapping[str, Any], objects: Mapping[str, Mapping[str, str]]
) -> str | None:
    name = ref.get("name", "")
    key = ref.get("key", "")
    optional = bool(ref.get("optional", False))
    data = objects.get(name)
    if data is None:
        if optional:
            return None
        raise EnvError(f'{kind} "{name}" not found')
    if key not in data:
        if optional:
            return None
        raise EnvError(f"couldn't find key {key} in {kind} {name}")
    return data[key]


def _env_from(sources: Iterable[Mapping[str, Any]], objects: EnvSources) -> dict[str, str]:
    result: dict[str, str] = {}
    for source in sources:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref, kind, pool = source["configMapRef"], "configmap", objects.configmaps
        elif "secretRef" in source:
            ref, kind, pool = source["secretRef"], "secret", objects.secrets
        else:
            continue
        data = pool.get(ref.get("name", ""))
        if data is None:
            if ref.get("optional", False):
                continue
            raise EnvError(f'{kind} "{ref.get("name", "")}" not found')
        for key, value in data.items():
            name = prefix + key
            if _ENV_NAME.match(name):  # kubelet skips invalid names (and emits an event)
                result[name] = value
    return result


def resolve_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    addresses: PodAddresses,
    objects: EnvSources,
) -> dict[str, str]:
    """Name -> value in the order kubelet passes them to the runtime."""
    env = _env_from(container.get("envFrom") or [], objects)
    for var in container.get("env") or []:
        name = var["name"]
        value_from = var.get("valueFrom")
        if not value_from:
            lookup = {**objects.service_env, **env}
            env[name] = expand(str(var.get("value", "")), lookup)
            continue
        try:
            if "fieldRef" in value_from:
                value: str | None = field_value(pod, value_from["fieldRef"]["fieldPath"], addresses)
            elif "resourceFieldRef" in value_from:
                ref = value_from["resourceFieldRef"]
                target = _container_named(pod, ref.get("containerName")) or container
                value = resource_value(
                    target, ref["resource"], ref.get("divisor"), objects.node_allocatable
                )
            elif "configMapKeyRef" in value_from:
                value = _key_ref("configmap", value_from["configMapKeyRef"], objects.configmaps)
            elif "secretKeyRef" in value_from:
                value = _key_ref("secret", value_from["secretKeyRef"], objects.secrets)
            else:
                raise EnvError(f"env {name}: unsupported valueFrom")
        except FieldRefError as exc:
            raise EnvError(f"env {name}: {exc}") from exc
        if value is not None:
            env[name] = value
    for name, value in objects.service_env.items():
        env.setdefault(name, value)
    return env


def _container_named(pod: Mapping[str, Any], name: str | None) -> Mapping[str, Any] | None:
    if not name:
        return None
    spec = pod.get("spec") or {}
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if container.get("name") == name:
            return container
    return None


def expand_argv(argv: Iterable[str], env: Mapping[str, str]) -> list[str]:
    return [expand(arg, env) for arg in argv]


def _env_prefix(service_name: str) -> str:
    return service_name.upper().replace("-", "_")


def service_env(services: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Docker-link style variables kubelet sets for each service with a cluster IP."""
    env: dict[str, str] = {}
    for service in sorted(services, key=lambda s: s["metadata"]["name"]):
        spec = service.get("spec") or {}
        ip = spec.get("clusterIP")
        ports = spec.get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        prefix = _env_prefix(service["metadata"]["name"])
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{_env_prefix(port['name'])}"] = str(port["port"])
        first_protocol = ports[0].get("protocol", "TCP").lower()
        env[f"{prefix}_PORT"] = f"{first_protocol}://{ip}:{ports[0]['port']}"
        for port in ports:
            protocol = port.get("protocol", "TCP")
            base = f"{prefix}_PORT_{port['port']}_{protocol.upper()}"
            env[base] = f"{protocol.lower()}://{ip}:{port['port']}"
            env[f"{base}_PROTO"] = protocol.lower()
            env[f"{base}_PORT"] = str(port["port"])
            env[f"{base}_ADDR"] = ip
    return env


def with_defaults(
    env: Mapping[str, str], venv_bin: str, hostname: str, home: str
) -> dict[str, str]:
    """What the image and runtime add: PATH (project venv first), HOSTNAME and HOME."""
    result = {"PATH": f"{venv_bin}:{DEFAULT_PATH}", "HOSTNAME": hostname, "HOME": home}
    result.update(env)
    return result
