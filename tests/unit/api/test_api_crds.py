"""The committed CRDs are exactly what the models generate, and they are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.crd_validation import compile_rule

from kiln.api import crdgen

pytestmark = pytest.mark.unit

CRD_DIR = Path(__file__).resolve().parents[3] / "crds"


def _schemas(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema node of an openAPIV3Schema, with its path."""
    found = [(path or "<root>", node)]
    for name, sub in node.get("properties", {}).items():
        found += _schemas(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            found += _schemas(node[key], f"{path}[{key}]")
    return found


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_committed_crd_matches_the_models(kind: crdgen.Kind) -> None:
    committed = (CRD_DIR / crdgen.file_name(kind)).read_text(encoding="utf-8")
    assert committed == crdgen.render(kind), (
        f"crds/{crdgen.file_name(kind)} is stale: run `python -m kiln.api.crdgen`"
    )


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_schema_is_structural(kind: crdgen.Kind) -> None:
    schema = crdgen.openapi_schema(kind.model)
    for path, node in _schemas(schema):
        assert not {"$ref", "anyOf", "allOf", "oneOf", "$defs", "title"} & node.keys(), path
        assert (
            "type" in node
            or node.get("x-kubernetes-int-or-string")
            or node.get("x-kubernetes-preserve-unknown-fields")
        ), f"{path} has no type"
        assert node.get("default", 0) is not None, f"{path} defaults to null"


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_every_field_is_documented(kind: crdgen.Kind) -> None:
    schema = crdgen.openapi_schema(kind.model)
    undocumented = [
        path
        for path, node in _schemas(schema)
        if "[" not in path.rsplit(".", 1)[-1]
        and path not in ("<root>", ".metadata")
        and not node.get("description")
    ]
    assert undocumented == []


def test_free_form_only_where_intended() -> None:
    free_form = {
        (kind.kind, path)
        for kind in crdgen.KINDS
        for path, node in _schemas(crdgen.openapi_schema(kind.model))
        if node.get("x-kubernetes-preserve-unknown-fields")
    }
    # Estimator params and the values a search tries are any JSON the estimator takes.
    trial_params = {
        ("TrainingJob", f".status.runs[items].search.{kept}[items].params")
        for kept in ("active", "best", "failures")
    }
    assert free_form == {
        ("TrainingJob", ".spec.params"),
        ("TrainingJob", ".spec.search.parameters[items].values[items]"),
        *trial_params,
        ("ModelVersion", ".spec.inputSchema.classes[items]"),
    }


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_every_cel_rule_compiles_and_names_a_field(kind: crdgen.Kind) -> None:
    schema = crdgen.openapi_schema(kind.model)
    rules = [r for _, node in _schemas(schema) for r in node.get("x-kubernetes-validations", [])]
    assert rules
    for rule in rules:
        compile_rule(rule["rule"])
        assert rule["message"].startswith(("spec", "metadata.name")), rule["message"]


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_strings_and_lists_under_rules_are_bounded(kind: crdgen.Kind) -> None:
    """The apiserver's CEL cost estimate needs a maximum size for what rules traverse."""
    schema = crdgen.openapi_schema(kind.model)
    for path, node in _schemas(schema):
        rules = [r["rule"] for r in node.get("x-kubernetes-validations", [])]
        if not rules:
            continue
        # `self == oldSelf` compares the whole subtree; other rules read `self` itself.
        whole = any("self == oldSelf" in rule for rule in rules)
        for sub_path, sub in _schemas(node, path) if whole else [(path, node)]:
            if sub.get("type") == "string" and "enum" not in sub:
                assert "maxLength" in sub or "format" in sub, sub_path
            if sub.get("type") == "array":
                assert "maxItems" in sub, sub_path
            if sub.get("type") == "object" and "properties" not in sub:
                assert "maxProperties" in sub, sub_path


def test_names_columns_and_subresources() -> None:
    by_kind = {kind.kind: crdgen.crd(kind) for kind in crdgen.KINDS}
    assert {k: v["spec"]["names"]["shortNames"] for k, v in by_kind.items()} == {
        "TrainingJob": ["tj"],
        "ModelVersion": ["mv"],
        "ModelDeployment": ["md"],
    }
    for crd in by_kind.values():
        assert crd["spec"]["group"] == "kiln.dev"
        assert crd["spec"]["names"]["categories"] == ["kiln"]
        version = crd["spec"]["versions"][0]
        assert version["name"] == "v1alpha1"
        assert version["subresources"] == {"status": {}}
        status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
        assert status["observedGeneration"]["type"] == "integer"
        assert status["conditions"]["x-kubernetes-list-type"] == "map"
    columns = {
        k: [c["name"] for c in v["spec"]["versions"][0]["additionalPrinterColumns"]]
        for k, v in by_kind.items()
    }
    assert columns["ModelVersion"] == ["Model", "Version", "Approval", "Metric", "Source", "Age"]
    assert "Phase" in columns["TrainingJob"] and "Phase" in columns["ModelDeployment"]
    (trainer,) = [
        c
        for c in by_kind["TrainingJob"]["spec"]["versions"][0]["additionalPrinterColumns"]
        if c["name"] == "Trainer"
    ]
    assert trainer["jsonPath"] == ".status.trainer.phase" and trainer["priority"] == 1  # wide


def test_status_has_no_defaults() -> None:
    for kind in crdgen.KINDS:
        status = crdgen.openapi_schema(kind.model)["properties"]["status"]
        assert all("default" not in node for _, node in _schemas(status)), kind.kind


def test_generated_file_starts_with_do_not_edit_header(tmp_path: Path) -> None:
    written = crdgen.write_all(tmp_path)
    assert sorted(p.name for p in written) == [
        "modeldeployments.kiln.dev.yaml",
        "modelversions.kiln.dev.yaml",
        "trainingjobs.kiln.dev.yaml",
    ]
    for path in written:
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# DO NOT EDIT — generated by python -m kiln.api.crdgen\n")
        assert yaml.safe_load(text)["kind"] == "CustomResourceDefinition"
