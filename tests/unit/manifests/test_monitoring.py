"""Alerts and dashboards: valid PromQL (promtool, built from the pinned Prometheus module),
and every metric they name exists in the operator's registry (operator/kiln/telemetry/)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from tests.support.builders import ModelDeploymentBuilder, ModelVersionBuilder
from tests.support.manifests import ROOT, find, kustomize, promtool

import kiln.telemetry
import kiln.telemetry.rollouts  # noqa: F401  (registers the rollout metrics)
from kiln.api import wire
from kiln.api.model_deployment import ModelDeployment
from kiln.api.model_version import ModelVersion
from kiln.builders import serving

pytestmark = pytest.mark.unit

MONITORING = ROOT / "manifests/monitoring"
DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))
# Series every Prometheus target has, or prometheus_client's default collectors export.
STANDARD = {"up"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def registry_names() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        for sample in family.samples:
            names.add(sample.name)
    # Unlabelled metrics show samples at once; labelled ones only after first use, so add
    # the exposition names of every registered family too.
    for collector in list(REGISTRY._collector_to_names):
        for name in REGISTRY._collector_to_names[collector]:
            names.add(name)
    return names


def rule_expressions() -> list[str]:
    groups = yaml.safe_load((MONITORING / "rules.yaml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    exprs = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            exprs.extend(t["expr"] for t in panel["targets"])
    return exprs


def metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    return {n for n in re.findall(r"\b(kiln_\w+|process_\w+|up)\b", without_labels)}


def test_rules_pass_promtool() -> None:
    answer = subprocess.run(
        [str(promtool()), "check", "rules", str(MONITORING / "rules.yaml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert f"SUCCESS: {len(rule_expressions())} rules found" in answer.stdout


def test_dashboard_queries_pass_promtool(tmp_path: Path) -> None:
    # Grafana's variables, replaced by what Grafana would put there.
    def concrete(expr: str) -> str:
        return (
            expr.replace("$__rate_interval", "5m")
            .replace("$namespace", "ml")
            .replace("$deployment", "iris")
        )

    exprs = dashboard_expressions()
    rules = [{"record": f"kiln:dashboard:{i}", "expr": concrete(e)} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboards.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    answer = subprocess.run(
        [str(promtool()), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "$" not in path.read_text()


def test_every_referenced_metric_exists_in_the_operator() -> None:
    known = registry_names()
    referenced = set()
    for expr in rule_expressions() + dashboard_expressions():
        referenced |= metric_names(expr)
    assert any(n.startswith("kiln_canary") for n in referenced)
    for name in referenced - STANDARD:
        base = name
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix) in known:
                base = name.removesuffix(suffix)
        assert base in known, f"{name} is not a metric of the operator's registry"


def test_alerts_cover_the_required_situations() -> None:
    groups = yaml.safe_load((MONITORING / "rules.yaml").read_text())["groups"]
    alerts = {rule["alert"]: rule for group in groups for rule in group["rules"]}
    for name in (
        "KilnOperatorDown",
        "KilnTrainingFailingRepeatedly",
        "KilnCanaryRolledBack",
        "KilnCanaryAnalysisInconclusive",
    ):
        assert name in alerts
        assert alerts[name]["annotations"]["summary"]
        assert alerts[name]["labels"]["severity"] in ("warning", "critical")


def test_prometheusrule_is_the_rule_file() -> None:
    rendered = kustomize("manifests/monitoring")
    (rule,) = find(rendered, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((MONITORING / "rules.yaml").read_text())


def test_dashboards_are_configmaps_for_the_grafana_sidecar() -> None:
    rendered = kustomize("manifests/monitoring")
    maps = find(rendered, "ConfigMap")
    assert len(maps) == len(DASHBOARDS) == 4
    uids = set()
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((file_name, content),) = config_map["data"].items()
        dashboard: dict[str, Any] = json.loads(content)
        assert file_name.endswith(".json") and dashboard["panels"]
        uids.add(dashboard["uid"])
    assert len(uids) == 4


def test_canary_dashboard_draws_the_thresholds() -> None:
    dashboard = json.loads((MONITORING / "dashboards/kiln-canary.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert any("kiln_canary_analysis_threshold{" in e and 'bound="max"' in e for e in exprs)
    assert any("kiln_canary_analysis_threshold{" in e and 'bound="min"' in e for e in exprs)


def test_podmonitors_select_the_operator_and_servers() -> None:
    rendered = kustomize("manifests/monitoring")
    monitors = {m["metadata"]["name"]: m for m in find(rendered, "PodMonitor")}
    base = kustomize("manifests/base")
    (deployment,) = find(base, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = monitors["kiln-operator"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    port_names = {
        p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert monitors["kiln-operator"]["spec"]["podMetricsEndpoints"][0]["port"] in port_names
    # The operator's series keep the namespace of the object they describe (dashboards
    # filter on it), rather than the operator pod's.
    assert monitors["kiln-operator"]["spec"]["podMetricsEndpoints"][0]["honorLabels"] is True
    # The server PodMonitor selects what the serving builder puts on the pods.
    servers = next(m for m in monitors.values() if m["metadata"]["name"] != "kiln-operator")
    (expression,) = servers["spec"]["selector"]["matchExpressions"]
    assert (expression["key"], expression["operator"]) == (wire.MODEL_DEPLOYMENT_LABEL, "Exists")
    assert {wire.MODEL_DEPLOYMENT_LABEL, wire.TRACK_LABEL} <= set(
        servers["spec"]["podTargetLabels"]
    )
    pod = serving.server_deployment(
        ModelDeployment.model_validate(ModelDeploymentBuilder("iris").obj()),
        "canary",
        ModelVersion.model_validate(ModelVersionBuilder("iris", 1).obj()),
        1,
        serving.ServingDefaults(),
    )["spec"]["template"]
    assert wire.MODEL_DEPLOYMENT_LABEL in pod["metadata"]["labels"]
    ports = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    assert servers["spec"]["podMetricsEndpoints"][0]["port"] in ports
