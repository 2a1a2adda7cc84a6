import pytest

from kiln.devcluster.nodeagent.images import (
    ImageConfig,
    ImageError,
    find_image,
    load_image_map,
    repository_of,
    resolve_argv,
)

pytestmark = pytest.mark.unit

IMAGES = [
    ImageConfig("kiln/trainer", entrypoint=("kiln-train",), user=65532),
    ImageConfig("python", cmd=("python3",)),
]


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("python", "python"),
        ("python:3.11", "python"),
        ("docker.io/library/python:3.11-slim", "python"),
        ("ghcr.io/acme/kiln/trainer:1.2@sha256:abcd", "acme/kiln/trainer"),
        ("localhost:5000/kiln/server", "kiln/server"),
        ("kiln/server@sha256:00", "kiln/server"),
    ],
)
def test_repository_ignores_registry_tag_and_digest(image: str, repository: str) -> None:
    assert repository_of(image) == repository


def test_registry_prefixed_image_matches_its_trailing_path() -> None:
    entry = find_image("ghcr.io/acme/kiln/trainer:v3", IMAGES)
    assert entry is not None and entry.entrypoint == ("kiln-train",)


def test_similar_names_do_not_match() -> None:
    assert find_image("acme/notkiln-trainer", IMAGES) is None
    assert find_image("pythonista", IMAGES) is None


def test_image_defaults_run_when_pod_gives_no_command() -> None:
    assert resolve_argv("kiln/trainer:1", None, None, IMAGES) == ["kiln-train"]
    assert resolve_argv("python:3.11", None, None, IMAGES) == ["python3"]


def test_args_replace_cmd_but_keep_entrypoint() -> None:
    assert resolve_argv("kiln/trainer", None, ["--epochs", "3"], IMAGES) == [
        "kiln-train",
        "--epochs",
        "3",
    ]
    assert resolve_argv("python", None, ["-V"], IMAGES) == ["-V"]


def test_command_replaces_entrypoint_and_drops_cmd() -> None:
    assert resolve_argv("python", ["python3", "-c", "print(1)"], None, IMAGES) == [
        "python3",
        "-c",
        "print(1)",
    ]
    assert resolve_argv("kiln/trainer", ["sh"], ["-c", "true"], IMAGES) == ["sh", "-c", "true"]


def test_unknown_image_runs_its_command() -> None:
    assert resolve_argv("example.com/x/y:1", ["sleep"], ["5"], IMAGES) == ["sleep", "5"]


def test_unknown_image_without_command_cannot_be_pulled() -> None:
    with pytest.raises(ImageError) as raised:
        resolve_argv("example.com/x/y:1", None, None, IMAGES)
    assert raised.value.reason == "ErrImagePull"
    assert "example.com/x/y:1" in raised.value.message


def test_shipped_image_map_covers_kiln_programs() -> None:
    shipped = load_image_map()
    expected = {
        "kiln/trainer": "kiln-train",
        "kiln/server": "kiln-serve",
        "kiln/operator": "kiln-operator",
    }
    for repository, program in expected.items():
        entry = find_image(f"ghcr.io/kiln-dev/{repository}:latest", shipped)
        assert entry is not None and entry.entrypoint == (program,)
        assert entry.user not in (None, 0)  # runAsNonRoot pods start without a runAsUser
    assert resolve_argv("busybox", ["sh", "-c", "true"], None, shipped) == ["sh", "-c", "true"]
