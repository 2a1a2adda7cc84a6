"""Alerts and dashboards: valid PromQL (promtool, built from the pinned Prometheus module),
and every metric they name exists in the operator's registry (operator/kiln/telemetry/) or
is one kiln-serve exports (its exposition, and the monitoring contract's series)."""

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
import kiln.telemetry.monitoring  # registers the monitoring gauges
import kiln.telemetry.rollouts  # noqa: F401  (registers the rollout metrics)
from kiln.api import wire
from kiln.api.model_deployment import ModelDeployment
from kiln.api.model_version import ModelVersion
from kiln.builders import serving
from kiln.contract import monitoring as contract
from kiln.server import telemetry as server_telemetry

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


def server_names() -> set[str]:
    """The series kiln-serve exports: its exposition (a classifier's and a regressor's) and
    the drift and capture series of the monitoring contract."""
    labels = server_telemetry.MetricLabels("iris", "iris-v1", "stable")
    names = set()
    for class_labels, snapshot in (
        (["a"], server_telemetry.MetricsSnapshot(class_counts=[1])),
        (None, server_telemetry.MetricsSnapshot(value_counts=[1] * 10)),
    ):
        for family in server_telemetry.metric_families(labels, ["f"], class_labels, snapshot, True):
            names.add(family.name)
            if family.type == "counter":
                names.add(f"{family.name}_total")
            names.update(sample.name for sample in family.samples)
    counters = (
        contract.FEATURE_BIN_METRIC,
        contract.PREDICTION_BIN_METRIC,
        contract.CAPTURE_RECORDS_METRIC,
        contract.FEEDBACK_RECORDS_METRIC,
    )
    names.update(f"{name}_total" for name in counters)
    names.update({contract.CAPTURE_QUEUE_METRIC, contract.UNMONITORED_FEATURES_METRIC})
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


def test_every_referenced_metric_exists_in_the_operator_or_the_server() -> None:
    known = registry_names() | server_names()
    referenced = set()
    for expr in rule_expressions() + dashboard_expressions():
        referenced |= metric_names(expr)
    assert any(n.startswith("kiln_canary") for n in referenced)
    for name in referenced - STANDARD:
        base = name
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix) in known:
                base = name.removesuffix(suffix)
        assert base in known, f"{name} is not a metric of the operator or of kiln-serve"


def test_alerts_cover_the_required_situations() -> None:
    groups = yaml.safe_load((MONITORING / "rules.yaml").read_text())["groups"]
    alerts = {rule["alert"]: rule for group in groups for rule in group["rules"]}
    for name in (
        "KilnOperatorDown",
        "KilnTrainingFailingRepeatedly",
        "KilnCanaryRolledBack",
        "KilnCanaryAnalysisInconclusive",
        "KilnFeatureDrift",
        "KilnLiveQualityDegraded",
        "KilnCaptureDropping",
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
    assert len(maps) == len(DASHBOARDS) == 5
    uids = set()
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((file_name, content),) = config_map["data"].items()
        dashboard: dict[str, Any] = json.loads(content)
        assert file_name.endswith(".json") and dashboard["panels"]
        uids.add(dashboard["uid"])
    assert len(uids) == 5


def test_canary_dashboard_draws_the_thresholds() -> None:
    dashboard = json.loads((MONITORING / "dashboards/kiln-canary.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert any("kiln_canary_analysis_threshold{" in e and 'bound="max"' in e for e in exprs)
    assert any("kiln_canary_analysis_threshold{" in e and 'bound="min"' in e for e in exprs)


def test_server_names_know_the_serving_series() -> None:
    names = server_names()
    for name in (
        "kiln_inference_requests_total",
        "kiln_inference_request_duration_seconds_bucket",
        "kiln_predictions_total",
        "kiln_prediction_value_bucket",
        "kiln_feature_bin_total",
        "kiln_capture_records_total",
        "kiln_capture_queue_depth",
    ):
        assert name in names


def test_serving_dashboard_covers_serving_and_monitoring() -> None:
    dashboard = json.loads((MONITORING / "dashboards/kiln-serving.json").read_text())
    panels = {p["title"]: p for p in dashboard["panels"]}
    exprs = " ".join(t["expr"] for p in panels.values() for t in p["targets"])
    for metric in (
        "kiln_inference_requests_total",
        'code=~"5.."',
        "histogram_quantile(0.5",
        "histogram_quantile(0.99",
        "kiln_predictions_total",
        "kiln_feature_drift",
        "kiln_live_quality",
        "kiln_training_quality",
        "kiln_capture_records_total",
        "kiln_capture_queue_depth",
    ):
        assert metric in exprs
    # Per version and track for the serving panels.
    for title in ("Requests / s", "Error ratio", "Latency p50 / p99", "Prediction shares"):
        (panel,) = [p for t, p in panels.items() if t.startswith(title)]
        assert all("version, track" in t["expr"] for t in panel["targets"])
    # The drift threshold is drawn: a dashed Grafana threshold line at 0.2.
    (drift,) = [p for t, p in panels.items() if t.startswith("Input drift")]
    defaults = drift["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "dashed"
    assert [s["value"] for s in defaults["thresholds"]["steps"]] == [None, 0.2]
    # Operator gauges are selected by `deployment`, kiln-serve's series by the pod label.
    for panel in panels.values():
        for target in panel["targets"]:
            expr = target["expr"]
            assert 'namespace=~"$namespace"' in expr
            assert (
                'deployment=~"$deployment"' in expr
                or 'kiln_dev_model_deployment=~"$deployment"' in expr
            )


def test_monitoring_alerts_fire_on_synthetic_series(tmp_path: Path) -> None:
    """promtool's rule unit tests: each monitoring alert fires on the series it watches and
    stays quiet otherwise."""
    drift = 'kiln_feature_drift{namespace="ml",deployment="iris",version="iris-v1",feature="%s"}'
    quality = '%s{namespace="ml",deployment="iris",version="iris-v1",metric="%s"}'
    labelled = (
        'kiln_monitoring_labelled_predictions{namespace="ml",deployment="iris",version="iris-v1"}'
    )
    capture = (
        'kiln_capture_records_total{namespace="ml",model="iris",version="iris-v1",'
        'track="stable",result="%s"}'
    )
    # The annotations are prose: compared here they would only restate the rule file.
    groups = yaml.safe_load((MONITORING / "rules.yaml").read_text())["groups"]
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": groups}))
    tests = {
        "rule_files": [str(rule_file)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": drift % "petal_length", "values": "0.5x40"},
                    {"series": drift % "sepal_width", "values": "0.05x40"},
                    {"series": quality % ("kiln_live_quality", "accuracy"), "values": "0.7x40"},
                    {
                        "series": quality % ("kiln_training_quality", "accuracy"),
                        "values": "0.95x40",
                    },
                    {"series": quality % ("kiln_live_quality", "rmse"), "values": "1.05x40"},
                    {"series": quality % ("kiln_training_quality", "rmse"), "values": "1x40"},
                    {"series": labelled, "values": "200x40"},
                    {"series": capture % "written", "values": "0+100x40"},
                    {"series": capture % "dropped", "values": "0+5x40"},
                ],
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": "KilnFeatureDrift", "exp_alerts": []},
                    {
                        "eval_time": "20m",
                        "alertname": "KilnFeatureDrift",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "namespace": "ml",
                                    "deployment": "iris",
                                    "version": "iris-v1",
                                    "feature": "petal_length",
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "20m",
                        "alertname": "KilnLiveQualityDegraded",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "namespace": "ml",
                                    "deployment": "iris",
                                    "version": "iris-v1",
                                    "metric": "accuracy",
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "20m",
                        "alertname": "KilnCaptureDropping",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "namespace": "ml",
                                    "model": "iris",
                                },
                            }
                        ],
                    },
                ],
            },
            {
                # Too few labels: live quality is not judged; nothing dropped: no capture alert.
                "interval": "1m",
                "input_series": [
                    {"series": quality % ("kiln_live_quality", "accuracy"), "values": "0.5x40"},
                    {
                        "series": quality % ("kiln_training_quality", "accuracy"),
                        "values": "0.95x40",
                    },
                    {"series": labelled, "values": "10x40"},
                    {"series": capture % "dropped", "values": "3x40"},
                ],
                "alert_rule_test": [
                    {"eval_time": "30m", "alertname": "KilnLiveQualityDegraded", "exp_alerts": []},
                    {"eval_time": "30m", "alertname": "KilnCaptureDropping", "exp_alerts": []},
                ],
            },
        ],
    }
    path = tmp_path / "monitoring.test.yaml"
    path.write_text(yaml.safe_dump(tests))
    answer = subprocess.run(
        [str(promtool()), "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert answer.returncode == 0, answer.stdout + answer.stderr


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
