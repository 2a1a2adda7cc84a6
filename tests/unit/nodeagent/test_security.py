import pytest

from kiln.devcluster.nodeagent.security import SecurityError, process_identity

pytestmark = pytest.mark.unit


def test_container_overrides_pod() -> None:
    pod = {
        "securityContext": {
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 2000,
            "supplementalGroups": [3000],
        }
    }
    container = {"securityContext": {"runAsUser": 1001}}
    identity = process_identity(pod, container, image_user=None)
    assert (identity.uid, identity.gid, identity.groups) == (1001, 1000, (2000, 3000))


def test_image_user_applies_when_nothing_is_set() -> None:
    assert process_identity({}, {}, image_user=65532).uid == 65532
    assert process_identity({}, {}, image_user=None).uid == 0


def test_run_as_non_root_refuses_root() -> None:
    with pytest.raises(SecurityError, match="runAsNonRoot"):
        process_identity({"securityContext": {"runAsNonRoot": True}}, {}, image_user=None)
    assert (
        process_identity({"securityContext": {"runAsNonRoot": True}}, {}, image_user=65532).uid
        == 65532
    )


def test_restricted_profile_settings() -> None:
    container = {
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        }
    }
    identity = process_identity({}, container, image_user=1)
    assert identity.no_new_privileges and identity.drop_all_capabilities and identity.read_only_root
    relaxed = process_identity({}, {}, image_user=1)
    assert not (
        relaxed.no_new_privileges or relaxed.drop_all_capabilities or relaxed.read_only_root
    )
