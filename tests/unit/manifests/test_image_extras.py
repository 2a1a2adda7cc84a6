"""Each image installs the wheel with one extra (`pip install kiln[operator]` …): every
third-party module its program imports must come from the base dependencies or that extra.

Static: the program's modules (its console script's module, its packages, and every
`kiln.*` module they import, at any depth and inside functions too) are parsed with `ast`.
A lazy `import boto3` in the operator's dataset polling, missing from the `operator` extra,
is what this catches (the image then failed on the first s3:// dataset, not at start)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest
from tests.support.manifests import ROOT

pytestmark = pytest.mark.unit

SOURCE = ROOT / "operator"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# image (= extra) -> the console script it runs and the packages that are its program.
PROGRAMS = {
    "operator": ("kiln-operator", ["kiln.operator", "kiln.handlers", "kiln.k8s", "kiln.store"]),
    "trainer": ("kiln-train", ["kiln.trainer"]),
    "server": ("kiln-serve", ["kiln.server"]),
}
# Distributions whose import names differ from their normalised project names.
IMPORT_NAMES = {
    "scikit-learn": {"sklearn"},
    "pyyaml": {"yaml"},
    "prometheus-client": {"prometheus_client"},
    "boto3": {"boto3", "botocore"},  # boto3 requires its botocore
}


def provided(requirements: list[str]) -> set[str]:
    names: set[str] = set()
    for requirement in requirements:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        assert match, requirement
        project = re.sub(r"[-_.]+", "-", match.group(0)).lower()
        names |= IMPORT_NAMES.get(project, {project.replace("-", "_")})
    return names


def module_file(module: str) -> Path | None:
    path = SOURCE.joinpath(*module.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def submodules(package: str) -> list[str]:
    path = SOURCE.joinpath(*package.split("."))
    if not path.is_dir():
        return [package]
    return [
        ".".join(file.relative_to(SOURCE).with_suffix("").parts).removesuffix(".__init__")
        for file in sorted(path.rglob("*.py"))
    ]


def type_checking_only(tree: ast.Module) -> set[ast.AST]:
    """Imports under `if TYPE_CHECKING:` (never executed)."""
    skipped: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped |= set(ast.walk(child))
    return skipped


def imported_names(module: str, file: Path) -> list[str]:
    tree = ast.parse(file.read_text(), str(file))
    skipped = type_checking_only(tree)
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return names


def third_party_imports(starts: list[str]) -> dict[str, set[str]]:
    """Top-level third-party module -> the kiln modules importing it, over the closure."""
    found: dict[str, set[str]] = {}
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        module = todo.pop()
        file = module_file(module)
        if module in seen or file is None:
            continue
        seen.add(module)
        for name in imported_names(module, file):
            top = name.partition(".")[0]
            if top == "kiln":
                parts = name.split(".")
                todo += [".".join(parts[:i]) for i in range(2, len(parts) + 1)]
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.setdefault(top, set()).add(module)
    return found


@pytest.mark.parametrize("image", PROGRAMS)
def test_program_imports_are_provided_by_its_extra(image: str) -> None:
    script, packages = PROGRAMS[image]
    entry_module = PROJECT["scripts"][script].partition(":")[0]
    starts = [entry_module] + [m for package in packages for m in submodules(package)]
    assert all(module_file(m) for m in starts), starts
    imports = third_party_imports(starts)
    available = provided(PROJECT["dependencies"] + PROJECT["optional-dependencies"][image])
    missing = {name: sorted(users) for name, users in imports.items() if name not in available}
    assert not missing, f"the `{image}` extra lacks what these modules import: {missing}"


@pytest.mark.parametrize("image", PROGRAMS)
def test_program_does_not_need_the_dev_cluster(image: str) -> None:
    script, packages = PROGRAMS[image]
    entry_module = PROJECT["scripts"][script].partition(":")[0]
    closure: set[str] = set()
    todo = [entry_module] + [m for package in packages for m in submodules(package)]
    while todo:
        module = todo.pop()
        file = module_file(module)
        if module in closure or file is None:
            continue
        closure.add(module)
        todo += [n for n in imported_names(module, file) if n.startswith("kiln.")]
    assert not {m for m in closure if m.startswith(("kilndev", "kiln.cli"))}


def test_the_check_sees_lazy_imports() -> None:
    # kiln.store.s3 imports boto3 inside a function; without boto3 the operator's extra
    # would be reported (the bug this test was written for).
    imports = third_party_imports(["kiln.operator", *submodules("kiln.handlers")])
    assert {"boto3", "botocore", "kopf"} <= set(imports)
    assert "boto3" not in provided(["kopf>=1.37", "prometheus-client>=0.20", "croniter>=2"])
