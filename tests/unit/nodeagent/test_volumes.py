import base64
from typing import Any

import pytest

from kiln.devcluster.nodeagent.fieldrefs import PodAddresses
from kiln.devcluster.nodeagent.volumes import (
    FileSpec,
    Mount,
    TokenRequest,
    VolumeError,
    VolumeInputs,
    configmap_data,
    mount_plan,
    references,
    render_files,
    secret_data,
    volume_kind,
)

pytestmark = pytest.mark.unit

ADDRESSES = PodAddresses("10.244.0.4", "10.244.0.1")
POD: dict[str, Any] = {
    "metadata": {"name": "p", "namespace": "ml", "uid": "u", "labels": {"b": "2", "a": "1"}},
    "spec": {"containers": [{"name": "main", "resources": {"limits": {"memory": "64Mi"}}}]},
}


def files(
    volume: dict[str, Any], inputs: VolumeInputs | None = None
) -> dict[str, tuple[bytes, int]]:
    rendered = render_files(volume, POD, ADDRESSES, inputs or VolumeInputs())
    return {f.path: (f.content, f.mode) for f in rendered}


def test_configmap_all_keys_with_default_mode() -> None:
    inputs = VolumeInputs(configmaps={"cfg": {"a.yaml": b"x: 1"}})
    assert files({"name": "v", "configMap": {"name": "cfg"}}, inputs) == {
        "a.yaml": (b"x: 1", 0o644)
    }


def test_secret_items_paths_and_modes() -> None:
    inputs = VolumeInputs(secrets={"s": {"password": b"pw", "other": b"o"}})
    volume = {
        "name": "v",
        "secret": {
            "secretName": "s",
            "defaultMode": 0o400,
            "items": [
                {"key": "password", "path": "db/pw"},
                {"key": "other", "path": "o", "mode": 0o600},
            ],
        },
    }
    assert files(volume, inputs) == {"db/pw": (b"pw", 0o400), "o": (b"o", 0o600)}


def test_missing_objects_and_keys() -> None:
    with pytest.raises(VolumeError, match='configmap "cfg" not found'):
        files({"name": "v", "configMap": {"name": "cfg"}})
    assert files({"name": "v", "configMap": {"name": "cfg", "optional": True}}) == {}
    inputs = VolumeInputs(configmaps={"cfg": {}})
    with pytest.raises(VolumeError, match="key 'k' not found"):
        files(
            {"name": "v", "configMap": {"name": "cfg", "items": [{"key": "k", "path": "k"}]}},
            inputs,
        )


def test_paths_cannot_escape_the_volume() -> None:
    inputs = VolumeInputs(configmaps={"cfg": {"k": b"x"}})
    for bad in ("../etc/passwd", "/abs"):
        with pytest.raises(VolumeError):
            files(
                {"name": "v", "configMap": {"name": "cfg", "items": [{"key": "k", "path": bad}]}},
                inputs,
            )


def test_downward_api_files() -> None:
    volume = {
        "name": "v",
        "downwardAPI": {
            "items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}},
                {
                    "path": "mem",
                    "resourceFieldRef": {
                        "containerName": "main",
                        "resource": "limits.memory",
                        "divisor": "1Mi",
                    },
                },
            ]
        },
    }
    assert files(volume) == {
        "labels": (b'a="1"\nb="2"', 0o644),
        "ns": (b"ml", 0o644),
        "mem": (b"64", 0o644),
    }


def test_projected_service_account_volume() -> None:
    """The volume the apiserver injects as kube-api-access-*."""
    volume = {
        "name": "kube-api-access-x",
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
        },
    }
    configmaps, secrets, tokens = references(volume)
    assert configmaps == {"kube-root-ca.crt"} and not secrets
    assert tokens == {TokenRequest(audience=None, expiration_seconds=3607)}
    inputs = VolumeInputs(
        configmaps={"kube-root-ca.crt": {"ca.crt": b"PEM"}},
        tokens={TokenRequest(None, 3607): "jwt"},
    )
    assert files(volume, inputs) == {
        "token": (b"jwt", 0o644),
        "ca.crt": (b"PEM", 0o644),
        "namespace": (b"ml", 0o644),
    }


def test_projected_volume_waits_for_its_token() -> None:
    volume = {"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}
    with pytest.raises(VolumeError):
        files(volume)


def test_object_decoding() -> None:
    assert configmap_data(
        {"data": {"a": "x"}, "binaryData": {"b": base64.b64encode(b"\0").decode()}}
    ) == {
        "a": b"x",
        "b": b"\0",
    }
    assert secret_data({"data": {"k": base64.b64encode(b"v").decode()}}) == {"k": b"v"}


def test_volume_kinds() -> None:
    assert (
        volume_kind({"name": "a", "persistentVolumeClaim": {"claimName": "c"}})
        == "persistentVolumeClaim"
    )
    with pytest.raises(VolumeError, match="unsupported"):
        volume_kind({"name": "a", "nfs": {}})


def test_mount_plan_orders_parents_first_and_honours_sub_paths() -> None:
    container = {
        "volumeMounts": [
            {"name": "data", "mountPath": "/data/cache/"},
            {"name": "data", "mountPath": "/data", "readOnly": True},
            {"name": "logs", "mountPath": "/logs", "subPathExpr": "$(POD)"},
            {"name": "cfg", "mountPath": "/etc/app.yaml", "subPath": "app.yaml"},
        ]
    }
    roots = {"data": "/v/data", "logs": "/v/logs", "cfg": "/v/cfg"}
    plan = mount_plan(container, roots, {"POD": "p-1"})
    assert plan[0] == Mount("/v/data", "/data", True)
    assert Mount("/v/data", "/data/cache", False) in plan[1:]
    assert Mount("/v/logs/p-1", "/logs", False) in plan
    assert Mount("/v/cfg/app.yaml", "/etc/app.yaml", False) in plan


def test_mount_plan_rejects_unknown_volumes_and_escapes() -> None:
    with pytest.raises(VolumeError, match="no such volume"):
        mount_plan({"volumeMounts": [{"name": "x", "mountPath": "/x"}]}, {}, {})
    with pytest.raises(VolumeError):
        mount_plan(
            {"volumeMounts": [{"name": "x", "mountPath": "/x", "subPath": "../../etc"}]},
            {"x": "/v"},
            {},
        )


def test_file_spec_is_plain_data() -> None:
    assert FileSpec("a", b"b", 0o600) == FileSpec("a", b"b", 0o600)
