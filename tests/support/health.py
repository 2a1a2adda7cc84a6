"""How GitOps tools judge Kiln objects: Argo CD's Lua health checks (run under Lua 5.1 via
lupa, the dialect Argo CD embeds) and kstatus (the library behind Flux's health checks,
built from its Go module into the `kstatus` CLI by scripts/build-tools.sh)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from lupa import lua51

ROOT = Path(__file__).resolve().parents[2]
HEALTH = ROOT / "manifests/argocd/health"
ARGO_SCRIPTS = {
    "TrainingJob": HEALTH / "trainingjob.lua",
    "ModelVersion": HEALTH / "modelversion.lua",
    "ModelDeployment": HEALTH / "modeldeployment.lua",
}


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


def argocd_health(obj: dict[str, Any]) -> dict[str, str]:
    """Run the kind's check as Argo CD does: the object in the global `obj`, a table back."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = _to_lua(runtime, obj)
    result = runtime.execute(ARGO_SCRIPTS[obj["kind"]].read_text())
    return {"status": str(result["status"]), "message": str(result["message"] or "")}


def kstatus_binary() -> Path:
    module = (ROOT / "tools/kstatus/go.mod").read_text()
    version = next(
        line.split()[-1] for line in module.splitlines() if "sigs.k8s.io/cli-utils" in line
    )
    cache = Path(os.environ.get("KILN_CACHE", Path.home() / ".cache/kiln"))
    binary = cache / f"kstatus-{version}/bin/kstatus"
    assert binary.exists(), f"{binary} missing: run `make tools` (scripts/build-tools.sh)"
    return binary


def kstatus(objects: list[dict[str, Any]]) -> list[dict[str, str]]:
    """kstatus's verdict ({status, message}) for each object, in order."""
    answer = subprocess.run(
        [str(kstatus_binary())],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return list(json.loads(answer.stdout))
