"""Invalid ModelDeployments, each with the message fragment admission must answer.

Shared by the unit tests (the generated CRD's schema and CEL, evaluated locally) and the
e2e tests (the same objects against a real apiserver). The invalid TrainingJobs are files
under tests/data/invalid_trainingjobs/ instead, one per case.
"""

from __future__ import annotations

import copy
from typing import Any

VALID_MD: dict[str, Any] = {
    "apiVersion": "kiln.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "iris"},
    "spec": {
        "model": "iris",
        "followLatestApproved": True,
        "canary": {
            "steps": [10, 25, 50],
            "checks": [{"name": "p95", "query": "histogram_quantile(0.95, x)", "max": 0.2}],
        },
    },
}

# (dotted path, value (None: removed), the fragment the refusal must contain)
INVALID_MODEL_DEPLOYMENTS: list[tuple[str, Any, str]] = [
    ("spec.modelVersion", "iris-v2", "exactly one of spec.modelVersion"),
    ("spec.followLatestApproved", False, "exactly one of spec.modelVersion"),
    ("spec.canary.steps", [10, 50, 50], "weights must be strictly increasing"),
    ("spec.canary.steps", [50, 10], "weights must be strictly increasing"),
    ("spec.canary.steps", [0, 10], "every weight must be between 1 and 100"),
    ("spec.canary.steps", [10, 101], "every weight must be between 1 and 100"),
    ("spec.canary.checks", [{"name": "x", "query": "q"}], "set min, max or both"),
    ("spec.canary.checks", [{"name": "x", "query": "q", "min": 2, "max": 1}], "min must be"),
    ("spec.canary.intervalSeconds", 1, "spec.canary.intervalSeconds"),
    ("spec.replicas", 0, "spec.replicas"),
    ("spec.canary.failureLimit", -1, "spec.canary.failureLimit"),
    ("spec.resources", {"requests": {"cpu": "half"}}, "spec.resources.requests.cpu"),
    ("spec.resources", {"limits": {"memory": "2GB"}}, "spec.resources.limits.memory"),
    ("spec.gateway", {"httpRoute": {"parentRefs": []}}, "spec.gateway.httpRoute.parentRefs"),
]


def with_value(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `document` with the dotted `path` set to `value` (None: removed)."""
    changed = copy.deepcopy(document)
    node = changed
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value
    return changed


def case_id(case: tuple[str, Any, str]) -> str:
    path, value, _ = case
    return f"{path.removeprefix('spec.')}={value}"
