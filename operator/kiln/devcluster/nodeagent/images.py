"""Image references -> local programs (pure), driven by `devcluster/images.yaml`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

IMAGE_MAP_PATH = Path(__file__).resolve().parent.parent / "images.yaml"


@dataclass(frozen=True)
class ImageConfig:
    """What an image's config would say: ENTRYPOINT, CMD and USER."""

    repository: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: int | None = None


@dataclass(frozen=True)
class ImageError(Exception):
    """The container cannot start from this image; `reason` is kubelet's waiting reason."""

    reason: str
    message: str


def repository_of(image: str) -> str:
    """The image's repository path without registry, tag and digest.

    `ghcr.io/acme/kiln/trainer:1.2@sha256:..` -> `acme/kiln/trainer`;
    `docker.io/library/python` -> `python`.
    """
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    tag_colon = name.rfind(":")
    if tag_colon > last_slash:
        name = name[:tag_colon]
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    if len(parts) > 1 and parts[0] == "library":
        parts = parts[1:]
    return "/".join(parts)


def parse_image_map(document: Mapping[str, Any]) -> list[ImageConfig]:
    entries = []
    for raw in document.get("images") or []:
        user = raw.get("user")
        entries.append(
            ImageConfig(
                repository=str(raw["repository"]),
                entrypoint=tuple(str(a) for a in raw.get("entrypoint") or ()),
                cmd=tuple(str(a) for a in raw.get("cmd") or ()),
                user=int(user) if user is not None else None,
            )
        )
    return entries


def load_image_map(path: Path = IMAGE_MAP_PATH) -> list[ImageConfig]:
    return parse_image_map(yaml.safe_load(path.read_text()) or {})


def find_image(image: str, image_map: Sequence[ImageConfig]) -> ImageConfig | None:
    """The entry whose repository equals the image's path or a trailing part of it."""
    repository = repository_of(image)
    for entry in image_map:
        if repository == entry.repository or repository.endswith("/" + entry.repository):
            return entry
    return None


def resolve_argv(
    image: str,
    command: Sequence[str] | None,
    args: Sequence[str] | None,
    image_map: Sequence[ImageConfig],
) -> list[str]:
    """The argv Kubernetes would run: `command` replaces ENTRYPOINT, `args` replace CMD.

    An image missing from the map can still run a container that brings its own command
    (the host's tools play the image); without one there is nothing to run: ErrImagePull.
    """
    entry = find_image(image, image_map)
    if entry is None:
        if command:
            return [*command, *(args or ())]
        raise ImageError(
            "ErrImagePull",
            f'image "{image}" is not in the node agent\'s image map '
            f"({IMAGE_MAP_PATH.name}) and the container has no command",
        )
    if command:
        argv = [*command, *(args or ())]
    else:
        argv = [*entry.entrypoint, *(args if args else entry.cmd)]
    if not argv:
        raise ImageError("CreateContainerError", f'image "{image}" has no entrypoint or cmd')
    return argv
