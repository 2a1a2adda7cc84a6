"""What can be checked of the Dockerfiles without building them (`make images` builds them
and the e2e tier runs them): every file they COPY exists, the extra they install exists in
pyproject.toml, the entrypoint is a console script of the package, the user is non-root
65532 and the base image is pinned."""

from __future__ import annotations

import re
import tomllib

import pytest
from tests.support.manifests import ROOT

pytestmark = pytest.mark.unit

IMAGES = {"operator": "kiln-operator", "trainer": "kiln-train", "server": "kiln-serve"}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.parametrize(("image", "program"), IMAGES.items())
def test_dockerfile(image: str, program: str) -> None:
    text = (ROOT / "images" / f"Dockerfile.{image}").read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    # Pinned base (a full version tag; the digest is pinned in the user's mirror).
    (base,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base
    # Multi-stage: the wheel is built once, the runtime stage installs it with the extra.
    assert text.count("FROM ${PYTHON_IMAGE}") == 2
    for line in instructions:
        if line.startswith("COPY") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"{image}: COPY {source} does not exist"
    (extra,) = re.findall(r'\[(\w+)\]"', text)
    assert extra == image and extra in PYPROJECT["project"]["optional-dependencies"]
    assert f'ENTRYPOINT ["{program}"]' in instructions
    assert program in PYPROJECT["project"]["scripts"]
    assert "USER 65532:65532" in instructions
    assert instructions.index("USER 65532:65532") > max(
        i for i, line in enumerate(instructions) if line.startswith("RUN")
    )
