"""Kiln objects for tests, built in the style of Kueue's test wrappers:

    TrainingJobBuilder("iris").dataset("s3://d/iris.csv").threshold("accuracy", 0.9).obj()

Each builder starts from the smallest object the apiserver accepts and each method says the
one thing a test cares about; `.obj()` returns a fresh dict the test may change further.
"""

from __future__ import annotations

import copy
from typing import Any, Self

from kiln.api.wire import API_VERSION

SHA = "a" * 64


class _Builder:
    kind: str

    def __init__(self, name: str, namespace: str) -> None:
        self._obj: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": {"name": name, "namespace": namespace, "generation": 1},
            "spec": {},
        }

    def for_create(self) -> Self:
        """The object as a client creates it: metadata is the name alone (the namespace is in
        the request's path, uid and generation are the apiserver's)."""
        self._obj["metadata"] = {"name": self._obj["metadata"]["name"]}
        return self

    def created(self, timestamp: str) -> Self:
        self._obj["metadata"]["creationTimestamp"] = timestamp
        return self

    def annotations(self, annotations: dict[str, str]) -> Self:
        """Exactly these annotations (none with an empty dict)."""
        self._obj["metadata"]["annotations"] = dict(annotations)
        return self

    def uid(self, uid: str) -> Self:
        self._obj["metadata"]["uid"] = uid
        return self

    def generation(self, generation: int) -> Self:
        self._obj["metadata"]["generation"] = generation
        return self

    def annotation(self, key: str, value: str) -> Self:
        self._obj["metadata"].setdefault("annotations", {})[key] = value
        return self

    def label(self, key: str, value: str) -> Self:
        self._obj["metadata"].setdefault("labels", {})[key] = value
        return self

    def spec(self, **fields: Any) -> Self:
        """Any spec fields, by their wire (camelCase) names."""
        self._obj["spec"].update(fields)
        return self

    def status(self, **fields: Any) -> Self:
        self._obj.setdefault("status", {}).update(fields)
        return self

    def obj(self) -> dict[str, Any]:
        return copy.deepcopy(self._obj)


class TrainingJobBuilder(_Builder):
    kind = "TrainingJob"

    def __init__(self, name: str, namespace: str = "ml") -> None:
        super().__init__(name, namespace)
        self._obj["metadata"]["uid"] = f"uid-{name}"
        self._obj["spec"] = {
            "model": "iris",
            "estimator": "sklearn.linear_model.LogisticRegression",
            "dataset": {"uri": "s3://d/iris.csv", "target": "species"},
        }

    def model(self, model: str) -> Self:
        return self.spec(model=model)

    def estimator(self, estimator: str) -> Self:
        return self.spec(estimator=estimator)

    def params(self, **params: Any) -> Self:
        return self.spec(params=params)

    def dataset(self, uri: str, target: str = "species", **fields: Any) -> Self:
        return self.spec(dataset={"uri": uri, "target": target, **fields})

    def output(self, uri: str, **fields: Any) -> Self:
        return self.spec(output={"uri": uri, **fields})

    def credentials(self, secret: str) -> Self:
        """S3 credentials from this Secret, the output location left to the operator."""
        return self.spec(output={"credentialsSecretRef": {"name": secret}})

    def evaluation(self, **fields: Any) -> Self:
        """spec.evaluation, by its wire names (testSize, seed, metrics)."""
        return self.spec(evaluation=fields)

    def threshold(self, metric: str, min: float | None = None, max: float | None = None) -> Self:
        gate: dict[str, Any] = {"metric": metric}
        if min is not None:
            gate["min"] = min
        if max is not None:
            gate["max"] = max
        registration = self._obj["spec"].setdefault("registration", {})
        registration.setdefault("thresholds", []).append(gate)
        return self

    def not_worse_than_approved(self, metric: str, max_degradation: float) -> Self:
        registration = self._obj["spec"].setdefault("registration", {})
        registration["notWorseThanApproved"] = {"metric": metric, "maxDegradation": max_degradation}
        return self

    def fairness(self, sensitive_column: str, metric: str, max_gap: float) -> Self:
        registration = self._obj["spec"].setdefault("registration", {})
        registration["fairness"] = {
            "sensitiveColumn": sensitive_column,
            "metric": metric,
            "maxGap": max_gap,
        }
        return self

    def backoff_limit(self, limit: int) -> Self:
        return self.spec(backoffLimit=limit)

    def triggers(self, **triggers: Any) -> Self:
        return self.spec(triggers=triggers)


class ModelVersionBuilder(_Builder):
    kind = "ModelVersion"

    def __init__(self, model: str, version: int, namespace: str = "ml") -> None:
        super().__init__(f"{model}-v{version}", namespace)
        self._obj["metadata"]["uid"] = f"mv-{model}-{version}"
        self._obj["spec"] = {
            "model": model,
            "version": version,
            "artifact": {"uri": f"s3://models/{model}/v{version}.skops", "sha256": SHA},
        }

    def metrics(self, **metrics: float) -> Self:
        return self.spec(metrics=metrics)

    def approval(self, state: str) -> Self:
        return self.status(approval={"state": state})

    def approved(self) -> Self:
        return self.approval("Approved")


class ModelDeploymentBuilder(_Builder):
    kind = "ModelDeployment"

    def __init__(self, name: str, namespace: str = "ml") -> None:
        super().__init__(name, namespace)
        self._obj["metadata"]["uid"] = f"md-{name}"
        self._obj["spec"] = {"model": "iris", "followLatestApproved": True, "replicas": 1}

    def model(self, model: str) -> Self:
        return self.spec(model=model)

    def replicas(self, replicas: int) -> Self:
        return self.spec(replicas=replicas)

    def pinned(self, version: str) -> Self:
        self._obj["spec"].pop("followLatestApproved", None)
        return self.spec(modelVersion=version)

    def canary(self, *steps: int, interval: int = 10, min_requests: int = 10) -> Self:
        return self.spec(
            canary={"steps": list(steps), "intervalSeconds": interval, "minRequests": min_requests}
        )
