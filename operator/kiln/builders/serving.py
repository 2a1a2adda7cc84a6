"""ModelDeployment -> the serving objects, as plain dicts (pure).

- `<name>-stable` and `<name>-canary`: apps/v1 Deployments of kiln-serve, one per track.
  The pod template carries the ModelVersion (name, artifact URI and sha256), so a new
  version is a template change and rolls out with `maxUnavailable: 0`.
- `<name>`: one ClusterIP Service selecting the pods of both tracks, so the traffic split
  follows the replica ratio (kube-proxy balances across ready endpoints).
- With `spec.gateway`: per-track Services `<name>-stable` / `<name>-canary` (shortened with
  a hash when longer than 63 characters) and a Gateway API HTTPRoute whose backend weights
  are exact.

Server pods pass Pod Security `restricted`, are scraped by Prometheus through the
`prometheus.io/*` annotations, are ready only when `/v2/health/ready` says the model is
loaded, and exit when the model cannot be loaded (sha256 mismatch, untrusted type) so the
reason lands in the pod status through `FallbackToLogsOnError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kiln.api.common import MAX_NAME_LENGTH
from kiln.api.model_deployment import ModelDeployment
from kiln.api.model_version import ModelVersion
from kiln.api.wire import (
    API_VERSION,
    MODEL_DEPLOYMENT_LABEL,
    MODEL_LABEL,
    MODEL_VERSION_LABEL,
    PART_OF,
    PART_OF_LABEL,
    SHA256_ANNOTATION,
    TRACK_LABEL,
)
from kiln.contract import monitoring as mc
from kiln.core.canary import Track
from kiln.core.registry import label_value
from kiln.core.training import bounded_name
from kiln.settings import DEFAULT_SERVER_IMAGE

COMPONENT = "serving"
SERVER_CONTAINER = "server"
SERVER_PORT = 8080
SERVICE_PORT = 80
SERVER_USER_ID = 65532
READINESS_PATH = "/v2/health/ready"
LIVENESS_PATH = "/v2/health/live"
TRACKS: tuple[Track, ...] = ("stable", "canary")
GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"


# What a server pod requests when the ModelDeployment says nothing. Without requests it is
# BestEffort: its cgroup gets the minimum CPU weight (cpu.shares 2 against 1024 for any
# host process), so on a busy node its latency collapses and it sheds load with 503s. A
# small request keeps it Burstable (weighted fairly, evicted after BestEffort pods) and
# leaves it free to use idle CPU (no limit).
DEFAULT_SERVER_RESOURCES: dict[str, Any] = {"requests": {"cpu": "100m", "memory": "256Mi"}}


class ServingBuildError(ValueError):
    """The ModelDeployment cannot be turned into serving objects as it stands."""


@dataclass(frozen=True)
class ServingDefaults:
    """Operator configuration that fills what a ModelDeployment leaves out."""

    image: str = DEFAULT_SERVER_IMAGE
    image_pull_policy: str = "IfNotPresent"
    s3_endpoint: str | None = None
    readiness_period_seconds: int = 2
    # After SIGTERM a server keeps answering at least this long while kube-proxy (or a
    # gateway) drops it from the endpoints (5 s is the usual preStop figure), and then
    # until no client has connected for `drain_quiet_seconds`: on a busy node the proxies
    # took longer than any fixed delay (an e2e canary under operator kills saw refusals
    # with 5 s), and only the arrivals say when they are done.
    drain_delay_seconds: float = 5.0
    drain_quiet_seconds: float = 1.0


def deployment_name(md_name: str, track: Track) -> str:
    return f"{md_name}-{track}"


def track_service_name(md_name: str, track: Track) -> str:
    """`<name>-<track>`, the Gateway API backend of one track.

    A Service name is a DNS label (at most 63 characters) while a ModelDeployment may have
    63 already; a longer one is shortened with a hash of the whole name, so it stays
    deterministic and distinct. Not refused at admission instead: a name cannot change,
    so a rule on it would make turning `spec.gateway` on impossible for an existing
    ModelDeployment whose every other object fits.
    """
    return bounded_name(md_name, f"-{track}", limit=MAX_NAME_LENGTH)


def route_name(md: ModelDeployment) -> str:
    name = _name(md)
    gateway = md.spec.gateway
    return (gateway.http_route.name if gateway and gateway.http_route.name else None) or name


def _name(md: ModelDeployment) -> str:
    if not md.metadata.name:
        raise ServingBuildError("the ModelDeployment has no name")
    return md.metadata.name


def _namespace(md: ModelDeployment) -> str:
    return md.metadata.namespace or "default"


def owner_reference(md: ModelDeployment) -> dict[str, Any]:
    if not md.metadata.uid:
        raise ServingBuildError("the ModelDeployment has no uid yet")
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelDeployment",
        "name": _name(md),
        "uid": md.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def selector_labels(md_name: str, track: Track | None = None) -> dict[str, str]:
    """Labels a Service (both tracks) or a Deployment (one track) selects on."""
    labels = {
        MODEL_DEPLOYMENT_LABEL: label_value(md_name),
        "app.kubernetes.io/component": COMPONENT,
    }
    if track is not None:
        labels[TRACK_LABEL] = track
    return labels


def common_labels(md: ModelDeployment) -> dict[str, str]:
    name = _name(md)
    return {
        **selector_labels(name),
        MODEL_LABEL: md.spec.model,
        "app.kubernetes.io/name": "kiln-server",
        "app.kubernetes.io/instance": label_value(name),
        PART_OF_LABEL: PART_OF,
        "app.kubernetes.io/managed-by": "kiln",
    }


def _environment(
    md: ModelDeployment, version: ModelVersion, track: Track, defaults: ServingDefaults
) -> list[dict[str, Any]]:
    mv = version.spec
    env: list[dict[str, Any]] = [
        {"name": "KILN_MODEL_NAME", "value": md.spec.model},
        {"name": "KILN_MODEL_VERSION", "value": version.metadata.name or ""},
        {"name": "KILN_ARTIFACT_URI", "value": mv.artifact.uri},
        {"name": "KILN_ARTIFACT_SHA256", "value": mv.artifact.sha256},
        {"name": "KILN_MODEL_FORMAT", "value": mv.artifact.format},
        {"name": "KILN_TRACK", "value": track},
        {"name": "KILN_PORT", "value": str(SERVER_PORT)},
        {"name": "KILN_EXIT_ON_LOAD_FAILURE", "value": "1"},
        {"name": "KILN_DRAIN_DELAY_SECONDS", "value": f"{defaults.drain_delay_seconds:g}"},
        {"name": "KILN_DRAIN_QUIET_SECONDS", "value": f"{defaults.drain_quiet_seconds:g}"},
        {"name": "HOME", "value": "/tmp"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    features = [f.name for f in mv.input_schema.features]
    if features and not any("," in f for f in features):
        env.append({"name": "KILN_FEATURE_NAMES", "value": ",".join(features)})
    if md.spec.allow_pickle:
        env.append({"name": "KILN_ALLOW_PICKLE", "value": "1"})
    env.extend(monitoring_environment(md, version))
    store = md.spec.artifact_store
    endpoint = (store.s3_endpoint if store else None) or defaults.s3_endpoint
    if endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": endpoint})
    secret = store.credentials_secret_ref if store else None
    if secret is not None:
        for variable, key in (
            ("AWS_ACCESS_KEY_ID", secret.access_key_id_key),
            ("AWS_SECRET_ACCESS_KEY", secret.secret_access_key_key),
        ):
            env.append(
                {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret.name, "key": key}}}
            )
    return env


def monitoring_environment(md: ModelDeployment, version: ModelVersion) -> list[dict[str, Any]]:
    """kiln-serve's monitoring settings (`kiln.contract.monitoring`).

    - The baseline whenever the version records one, with or without `spec.monitoring`:
      counting inputs into its bins costs little, and the canary's drift check reads those
      counters on any ModelDeployment.
    - With `spec.monitoring`: the pod's namespace, ModelDeployment and pod name (downward
      API), which name the capture objects; and with capture on, its settings. Capture
      writes use the S3 endpoint and credentials the pods already get for the artifact
      (`spec.artifactStore`). Without `spec.monitoring` none of these are set, so turning
      the operator's monitoring on does not roll every existing Deployment.
    """
    env: list[dict[str, Any]] = []
    baseline = version.spec.baseline
    if baseline is not None:
        env += [
            {"name": mc.ENV_BASELINE_URI, "value": baseline.uri},
            {"name": mc.ENV_BASELINE_SHA256, "value": baseline.sha256},
        ]
    monitoring = md.spec.monitoring
    if monitoring is None:
        return env
    env += [
        {"name": mc.ENV_NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": mc.ENV_DEPLOYMENT, "value": _name(md)},
        {"name": mc.ENV_POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    capture = monitoring.capture
    if capture is not None and capture.enabled:
        env += [
            {"name": mc.ENV_CAPTURE_DESTINATION, "value": capture.destination},
            {"name": mc.ENV_CAPTURE_SAMPLE_RATE, "value": f"{capture.sample_rate:g}"},
            {"name": mc.ENV_CAPTURE_MAX_RECORDS, "value": str(capture.max_records_per_object)},
            {"name": mc.ENV_CAPTURE_FLUSH_SECONDS, "value": str(capture.flush_seconds)},
            {"name": mc.ENV_CAPTURE_QUEUE, "value": str(capture.queue_records)},
        ]
    return env


def server_deployment(
    md: ModelDeployment,
    track: Track,
    version: ModelVersion,
    replicas: int,
    defaults: ServingDefaults,
) -> dict[str, Any]:
    """The Deployment of one track serving `version`. Deterministic: same inputs, same dict."""
    name = _name(md)
    version_name = version.metadata.name
    if not version_name:
        raise ServingBuildError("the ModelVersion has no name")
    if version.spec.model != md.spec.model:
        raise ServingBuildError(
            f"ModelVersion {version_name} is a version of {version.spec.model}, "
            f"not of {md.spec.model}"
        )
    labels = {**common_labels(md), TRACK_LABEL: track}
    pod_labels = {**labels, MODEL_VERSION_LABEL: label_value(version_name)}
    resources = md.spec.resources.to_wire() if md.spec.resources else DEFAULT_SERVER_RESOURCES
    container: dict[str, Any] = {
        "name": SERVER_CONTAINER,
        "image": md.spec.image or defaults.image,
        "imagePullPolicy": defaults.image_pull_policy,
        "ports": [{"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"}],
        "env": _environment(md, version, track, defaults),
        "resources": resources,
        "readinessProbe": {
            "httpGet": {"path": READINESS_PATH, "port": "http"},
            "periodSeconds": defaults.readiness_period_seconds,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": LIVENESS_PATH, "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": SERVER_USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(name, track),
            "namespace": _namespace(md),
            "labels": labels,
            "annotations": {MODEL_VERSION_LABEL: version_name},
            "ownerReferences": [owner_reference(md)],
        },
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(name, track)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(SERVER_PORT),
                        "prometheus.io/path": "/metrics",
                        MODEL_VERSION_LABEL: version_name,
                        SHA256_ANNOTATION: version.spec.artifact.sha256,
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": SERVER_USER_ID,
                        "runAsGroup": SERVER_USER_ID,
                        "fsGroup": SERVER_USER_ID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    # Replicas of a track on different nodes where there are several, so
                    # losing or draining one node never takes the whole track away; on a
                    # one-node cluster they still schedule (ScheduleAnyway).
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector_labels(name, track)},
                            "matchLabelKeys": ["pod-template-hash"],
                        }
                    ],
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
                },
            },
        },
    }


def disruption_budget(md: ModelDeployment, track: Track) -> dict[str, Any]:
    """A PodDisruptionBudget per track: a drain evicts its pods one at a time, and only
    while another is ready, so a node drain never leaves the track without a server.
    (`maxUnavailable: 1` rather than `minAvailable`: a one-replica track still drains.)"""
    name = _name(md)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": deployment_name(name, track),
            "namespace": _namespace(md),
            "labels": {**common_labels(md), TRACK_LABEL: track},
            "ownerReferences": [owner_reference(md)],
        },
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(name, track)},
            # Pods that are not ready yet (a version that cannot load) may always be
            # evicted: they serve nothing, and must not block a drain.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def scale_patch(replicas: int) -> dict[str, Any]:
    """Merge patch that only changes the replica count (the template is left alone)."""
    return {"spec": {"replicas": replicas}}


def service(md: ModelDeployment, track: Track | None = None) -> dict[str, Any]:
    """`<name>` selecting both tracks, or `<name>-<track>` for one (Gateway API backends)."""
    name = _name(md)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name if track is None else track_service_name(name, track),
            "namespace": _namespace(md),
            "labels": common_labels(md) | ({TRACK_LABEL: track} if track else {}),
            "ownerReferences": [owner_reference(md)],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(name, track),
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def http_route(md: ModelDeployment, stable_weight: int, canary_weight: int) -> dict[str, Any]:
    """The HTTPRoute splitting traffic between the per-track Services by exact weights."""
    gateway = md.spec.gateway
    if gateway is None:
        raise ServingBuildError("spec.gateway is not set")
    name = _name(md)
    route = gateway.http_route
    spec: dict[str, Any] = {
        "parentRefs": [ref.to_wire() for ref in route.parent_refs],
        "rules": [
            {
                "backendRefs": [
                    {
                        "name": track_service_name(name, "stable"),
                        "port": SERVICE_PORT,
                        "weight": stable_weight,
                    },
                    {
                        "name": track_service_name(name, "canary"),
                        "port": SERVICE_PORT,
                        "weight": canary_weight,
                    },
                ]
            }
        ],
    }
    if route.hostnames:
        spec["hostnames"] = list(route.hostnames)
    return {
        "apiVersion": GATEWAY_API_VERSION,
        "kind": "HTTPRoute",
        "metadata": {
            "name": route_name(md),
            "namespace": _namespace(md),
            "labels": common_labels(md),
            "ownerReferences": [owner_reference(md)],
        },
        "spec": spec,
    }
