"""Rendering Kiln's kustomizations and finding the pinned tool binaries (shared by the
unit and e2e manifest tests)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
# Every kustomization a user applies.
KUSTOMIZATIONS = [
    "manifests",
    "manifests/base",
    "manifests/crds",
    "manifests/overlays/namespaced",
    "manifests/overlays/dev",
    "manifests/monitoring",
]


def _cache() -> Path:
    return Path(os.environ.get("KILN_CACHE", Path.home() / ".cache/kiln"))


def module_version(tools_dir: str, module: str) -> str:
    """The required version, found as scripts/build-tools.sh finds it."""
    for line in (ROOT / "tools" / tools_dir / "go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == module:
            return parts[1]
        if len(parts) >= 3 and parts[0] == "require" and parts[1] == module:
            return parts[2]
    raise AssertionError(f"{module} not in tools/{tools_dir}/go.mod")


def tool(tools_dir: str, module: str, name: str) -> Path:
    set_name = "k8s" if tools_dir == "k8s" else tools_dir
    binary = _cache() / f"{set_name}-{module_version(tools_dir, module)}" / "bin" / name
    assert binary.exists(), f"{binary} missing: run `make tools` (scripts/build-tools.sh)"
    return binary


def kubectl() -> Path:
    return tool("k8s", "k8s.io/kubernetes", "kubectl")


def promtool() -> Path:
    return tool("prometheus", "github.com/prometheus/prometheus", "promtool")


def kustomize(path: str | Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` output, parsed."""
    rendered = subprocess.run(
        [str(kubectl()), "kustomize", str(ROOT / path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [d for d in yaml.safe_load_all(rendered) if d]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
