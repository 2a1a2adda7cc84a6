"""ModelDeployment -> serving Deployments, Service and HTTPRoute (plain dicts)."""

from __future__ import annotations

from typing import Any

import pytest

from kiln.api.model_deployment import ModelDeployment
from kiln.api.model_version import ModelVersion
from kiln.builders import serving
from kiln.builders.serving import ServingDefaults
from kiln.core.canary import TrackObservation
from kiln.handlers.observations import observe_track, pod_messages
from kiln.server.config import parse_config

pytestmark = pytest.mark.unit

SHA = "a" * 64
DEFAULTS = ServingDefaults(image="kiln/server:test", s3_endpoint="http://s3.local:8333")


def md(**spec: Any) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "metadata": {"name": "iris", "namespace": "prod", "uid": "uid-1", "generation": 1},
            "spec": {"model": "iris", "followLatestApproved": True, **spec},
        }
    )


def mv(version: int = 2, model: str = "iris") -> ModelVersion:
    return ModelVersion.model_validate(
        {
            "metadata": {"name": f"{model}-v{version}", "namespace": "prod"},
            "spec": {
                "model": model,
                "version": version,
                "artifact": {"uri": f"s3://models/{model}/v{version}.skops", "sha256": SHA},
                "inputSchema": {
                    "features": [{"name": n} for n in ("sl", "sw", "pl", "pw")],
                    "classes": ["a", "b", "c"],
                },
            },
        }
    )


def env(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_deployment_identity_owner_and_selector() -> None:
    d = serving.server_deployment(md(), "canary", mv(), 3, DEFAULTS)
    meta = d["metadata"]
    assert (meta["name"], meta["namespace"]) == ("iris-canary", "prod")
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "kiln.dev/v1alpha1",
            "kind": "ModelDeployment",
            "name": "iris",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert d["spec"]["replicas"] == 3
    assert d["spec"]["selector"]["matchLabels"] == {
        "kiln.dev/model-deployment": "iris",
        "app.kubernetes.io/component": "serving",
        "kiln.dev/track": "canary",
    }
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert d["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert labels["kiln.dev/model-version"] == "iris-v2"
    # Pod labels become Prometheus target labels: none may shadow the server's own.
    assert not {"model", "version", "track", "namespace", "pod"} & set(labels)
    assert d["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}


def test_same_inputs_same_manifest() -> None:
    assert serving.server_deployment(md(), "stable", mv(), 2, DEFAULTS) == (
        serving.server_deployment(md(), "stable", mv(), 2, DEFAULTS)
    )


def test_passes_pod_security_restricted() -> None:
    pod = serving.server_deployment(md(), "stable", mv(), 2, DEFAULTS)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
        assert sc["readOnlyRootFilesystem"] is True
        assert "ports" in container and not any("hostPort" in p for p in container["ports"])
    assert all(set(v) <= {"name", "emptyDir"} for v in pod["volumes"])


def test_probes_and_scrape_annotations() -> None:
    d = serving.server_deployment(md(), "stable", mv(), 2, DEFAULTS)
    container = d["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    annotations = d["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8080"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["kiln.dev/artifact-sha256"] == SHA


def test_environment_is_what_kiln_serve_accepts() -> None:
    d = serving.server_deployment(md(), "canary", mv(), 1, DEFAULTS)
    values = {k: v for k, v in env(d).items() if isinstance(v, str)}
    config = parse_config([], values)
    assert (config.model_name, config.model_version, config.track) == ("iris", "iris-v2", "canary")
    assert (config.artifact_uri, config.artifact_sha256) == ("s3://models/iris/v2.skops", SHA)
    assert config.feature_names == ("sl", "sw", "pl", "pw")
    assert config.exit_on_load_failure is True
    assert config.allow_pickle is False
    assert config.port == 8080
    assert values["AWS_ENDPOINT_URL"] == "http://s3.local:8333"


def test_credentials_come_from_a_secret_by_reference() -> None:
    spec = {
        "artifactStore": {
            "s3Endpoint": "http://other:9000",
            "credentialsSecretRef": {"name": "s3-creds"},
        },
        "allowPickle": True,
        "image": "registry/kiln/server:9",
        "resources": {"requests": {"cpu": "100m"}},
    }
    d = serving.server_deployment(md(**spec), "stable", mv(), 1, DEFAULTS)
    values = env(d)
    assert values["AWS_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}
    }
    assert values["AWS_SECRET_ACCESS_KEY"] == {
        "secretKeyRef": {"name": "s3-creds", "key": "AWS_SECRET_ACCESS_KEY"}
    }
    assert values["AWS_ENDPOINT_URL"] == "http://other:9000"
    assert values["KILN_ALLOW_PICKLE"] == "1"
    container = d["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry/kiln/server:9"
    assert container["resources"] == {"requests": {"cpu": "100m"}}


def test_version_of_another_model_is_refused() -> None:
    with pytest.raises(serving.ServingBuildError, match="not of iris"):
        serving.server_deployment(md(), "stable", mv(model="wine"), 1, DEFAULTS)


def test_no_uid_no_owner() -> None:
    unsaved = md()
    unsaved.metadata.uid = None
    with pytest.raises(serving.ServingBuildError, match="uid"):
        serving.service(unsaved)


def test_service_selects_both_tracks() -> None:
    svc = serving.service(md())
    assert svc["metadata"]["name"] == "iris"
    assert svc["spec"]["selector"] == {
        "kiln.dev/model-deployment": "iris",
        "app.kubernetes.io/component": "serving",
    }
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    track = serving.service(md(), "canary")
    assert track["metadata"]["name"] == "iris-canary"
    assert track["spec"]["selector"]["kiln.dev/track"] == "canary"


def test_a_63_character_name_gets_per_track_services_that_fit_and_the_route_names_them() -> None:
    """The longest name the CRD admits: `<name>-canary` would be 70, over a DNS label."""
    longest, other = "iris-" + "x" * 58, "iris-" + "x" * 57 + "y"
    gateway = {"httpRoute": {"parentRefs": [{"name": "edge"}]}}
    deployment = md(gateway=gateway)
    deployment.metadata.name = longest
    names = {
        track: serving.service(deployment, track)["metadata"]["name"] for track in serving.TRACKS
    }
    assert all(len(n) <= 63 and n.endswith(f"-{t}") for t, n in names.items()), names
    assert names["stable"] != serving.track_service_name(other, "stable")  # the hash tells apart
    backends = serving.http_route(deployment, 90, 10)["spec"]["rules"][0]["backendRefs"]
    assert [b["name"] for b in backends] == [names["stable"], names["canary"]]
    # Short names are left as they are.
    assert serving.track_service_name("iris", "canary") == "iris-canary"


def test_http_route_weights() -> None:
    gateway = {
        "httpRoute": {
            "parentRefs": [{"name": "edge", "namespace": "gw", "sectionName": "http"}],
            "hostnames": ["iris.example.com"],
        }
    }
    route = serving.http_route(md(gateway=gateway), 90, 10)
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["metadata"]["name"] == "iris"
    assert route["spec"]["parentRefs"] == [
        {"name": "edge", "namespace": "gw", "sectionName": "http"}
    ]
    assert route["spec"]["hostnames"] == ["iris.example.com"]
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"name": "iris-stable", "port": 80, "weight": 90},
        {"name": "iris-canary", "port": 80, "weight": 10},
    ]
    with pytest.raises(serving.ServingBuildError):
        serving.http_route(md(), 100, 0)


def _observed(deployment: dict[str, Any], **status: Any) -> dict[str, Any]:
    deployment = {**deployment, "metadata": {**deployment["metadata"], "generation": 2}}
    deployment["status"] = {"observedGeneration": 2, **status}
    return deployment


def test_observe_track_ready_and_rolling() -> None:
    d = serving.server_deployment(md(), "stable", mv(), 2, DEFAULTS)
    done = observe_track(_observed(d, replicas=2, updatedReplicas=2, readyReplicas=2))
    assert done == TrackObservation(version="iris-v2", replicas=2, ready_replicas=2)
    assert done.ready_at("iris-v2", 2)
    rolling = observe_track(_observed(d, replicas=3, updatedReplicas=1, readyReplicas=2))
    assert not rolling.rolled_out and not rolling.ready_at("iris-v2", 2)
    assert observe_track(None) == TrackObservation()


def test_observe_track_reads_the_load_failure_of_current_pods() -> None:
    d = serving.server_deployment(md(), "canary", mv(), 1, DEFAULTS)
    crashed = {
        "metadata": {"annotations": {"kiln.dev/model-version": "iris-v2"}},
        "status": {
            "containerStatuses": [
                {
                    "lastState": {
                        "terminated": {
                            "exitCode": 1,
                            "message": '{"msg":"model not loaded","reason":"IntegrityError: '
                            'artifact sha256 x does not match the expected y"}',
                        }
                    }
                }
            ]
        },
    }
    old = {**crashed, "metadata": {"annotations": {"kiln.dev/model-version": "iris-v1"}}}
    seen = observe_track(_observed(d, replicas=1), [crashed])
    assert seen.failure_reason == "IntegrityError"
    assert "does not match" in seen.failure_message
    assert observe_track(_observed(d, replicas=1), [old]).failure_reason is None


CRASH_LOG = '{"msg":"model not loaded","reason":"IntegrityError: sha256 mismatch"}'


def test_pod_messages_reads_current_and_last_termination() -> None:
    pods = [
        {
            "status": {
                "containerStatuses": [
                    {
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"exitCode": 1, "message": CRASH_LOG}},
                    }
                ]
            }
        },
        {"status": {}},
    ]
    assert pod_messages(pods) == [CRASH_LOG]


def test_replicas_of_a_track_spread_over_nodes_of_the_same_revision() -> None:
    d = serving.server_deployment(md(), "stable", mv(), 2, DEFAULTS)
    (spread,) = d["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    # Still schedulable on a one-node cluster; counted per revision, so a rollout's new pods
    # spread among themselves rather than around the old ones.
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert spread["matchLabelKeys"] == ["pod-template-hash"]
    assert spread["labelSelector"]["matchLabels"] == d["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("track", ["stable", "canary"])
def test_each_track_has_a_disruption_budget_over_its_own_pods(track: str) -> None:
    pdb = serving.disruption_budget(md(), track)  # type: ignore[arg-type]
    deployment = serving.server_deployment(md(), track, mv(), 2, DEFAULTS)  # type: ignore[arg-type]
    assert pdb["metadata"]["name"] == f"iris-{track}"
    assert pdb["metadata"]["ownerReferences"] == deployment["metadata"]["ownerReferences"]
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_a_server_without_resources_requests_some_and_is_not_limited() -> None:
    # BestEffort server pods starve behind any busy host process; a request makes them
    # Burstable. No limit: a server may use the node's idle CPU.
    container = serving.server_deployment(md(), "stable", mv(), 1, DEFAULTS)["spec"]["template"][
        "spec"
    ]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}}
