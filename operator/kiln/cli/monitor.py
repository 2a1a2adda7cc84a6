"""`kiln monitor MD [--watch]`: the served version's drift, live quality and capture, in one
view (what the operator wrote to `status.monitoring` and the `Drifting` / `QualityDegraded`
conditions).

The view is `render(...)`, a pure function of the ModelDeployment's spec and status dicts,
so it is tested without a cluster.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from kiln.api.metrics import METRIC_DIRECTIONS
from kiln.api.model_deployment import ModelDeploymentStatus
from kiln.api.monitoring import FeatureDrift, MonitoringSpec, MonitoringStatus, QualityStatus
from kiln.api.wire import GROUP, VERSION

PLURAL = "modeldeployments"
# The monitoring conditions the operator sets on a ModelDeployment.
MONITORING_CONDITIONS = ("Drifting", "QualityDegraded")


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _stamp(when: datetime | None, now: datetime | None, *, bare: bool = False) -> str:
    if when is None:
        return "never"
    text = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if now is not None:
        ago = f"{_duration((now - when).total_seconds())} ago"
        text += f", {ago}" if bare else f" ({ago})"
    return text


def _table(header: list[str], rows: list[list[str]], indent: str = "    ") -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def _feature_marker(feature: FeatureDrift, min_samples: int | None) -> str:
    if feature.drifting:
        return "DRIFTING"
    if feature.psi is None:
        return "no data"
    if min_samples is not None and feature.samples < min_samples:
        return f"not enough data (< {min_samples})"
    return ""


def _quality_marker(quality: QualityStatus, min_labelled: int | None) -> str:
    if quality.live is None:
        return "no data"
    if min_labelled is not None and quality.labelled < min_labelled:
        return f"not enough labels (< {min_labelled})"
    direction = METRIC_DIRECTIONS.get(quality.metric or "")
    if quality.bound is None or direction is None:
        return ""
    if direction == "higherIsBetter":
        worse = quality.live < quality.bound
    else:
        worse = quality.live > quality.bound
    return "DEGRADED" if worse else ""


def _spec_monitoring(spec: Mapping[str, Any]) -> tuple[MonitoringSpec | None, str]:
    raw = spec.get("monitoring")
    if raw is None:
        return None, ""
    try:
        return MonitoringSpec.model_validate(raw), ""
    except ValidationError as e:
        return None, f"spec.monitoring is not valid: {e.errors()[0].get('msg', e)}"


def render(
    name: str,
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    *,
    now: datetime | None = None,
) -> str:
    """The monitoring view of one ModelDeployment (pure, for tests)."""
    md_status = ModelDeploymentStatus.model_validate(status or {})
    monitoring_spec, invalid = _spec_monitoring(spec)
    serving = md_status.stable_version or "-"
    lines = [f"ModelDeployment {name}: serving {serving}"]
    if md_status.canary_version:
        lines[0] += f" (canary {md_status.canary_version} at {md_status.canary_weight}%)"
    if invalid:
        lines.append(f"  {invalid}")
        return "\n".join(lines)
    monitoring = md_status.monitoring
    if monitoring_spec is None and monitoring is None:
        lines.append(
            "  monitoring is not configured: set spec.monitoring (drift, quality, capture; "
            "see docs/monitoring.md)"
        )
        return "\n".join(lines)
    if monitoring_spec is not None:
        lines.append(
            f"  window {monitoring_spec.window_seconds}s, evaluated every "
            f"{monitoring_spec.interval_seconds}s"
        )
    if monitoring is None or monitoring.last_evaluated_time is None:
        lines.append("  not evaluated yet: the operator has not measured this deployment")
        if monitoring is not None and monitoring.message:
            lines.append(f"  {monitoring.message}")
        lines.extend(_conditions(md_status, now))
        return "\n".join(lines)
    lines.append(f"  last evaluated {_stamp(monitoring.last_evaluated_time, now)}")
    lines.extend(_conditions(md_status, now))
    lines.extend(_drift(monitoring, monitoring_spec))
    lines.extend(_quality(monitoring, monitoring_spec))
    lines.extend(_capture(monitoring, monitoring_spec))
    if monitoring.message:
        lines.append(f"  {monitoring.message}")
    return "\n".join(lines)


def _conditions(status: ModelDeploymentStatus, now: datetime | None) -> list[str]:
    found = {c.type: c for c in status.conditions if c.type in MONITORING_CONDITIONS}
    rows = []
    for kind in MONITORING_CONDITIONS:
        condition = found.get(kind)
        if condition is None:
            rows.append([kind, "-", "", "not set yet"])
            continue
        since = ""
        if condition.last_transition_time is not None:
            since = f" (since {_stamp(condition.last_transition_time, now, bare=True)})"
        rows.append([kind, condition.status, condition.reason, condition.message + since])
    return ["  conditions:", *_table(["TYPE", "STATUS", "REASON", "MESSAGE"], rows)]


def _drift(monitoring: MonitoringStatus, spec: MonitoringSpec | None) -> list[str]:
    drift = monitoring.drift
    if spec is not None and not spec.drift.enabled:
        return ["  drift: off (spec.monitoring.drift.enabled: false)"]
    if drift is None:
        return ["  drift: not measured"]
    threshold = f", threshold PSI {spec.drift.psi_threshold:g}" if spec is not None else ""
    head = (
        f"  drift of {drift.version or '-'} over {drift.window or '-'} "
        f"({drift.samples} rows{threshold})"
    )
    if spec is not None and spec.drift.max_drifting_share > 0:
        head += f", Drifting above {spec.drift.max_drifting_share:g} of the features"
    lines = [head + ":"]
    if not drift.features:
        return [*lines, "    no feature measured"]
    min_samples = spec.drift.min_samples if spec is not None else None
    rows = [
        [f.feature, _number(f.psi), str(f.samples), _feature_marker(f, min_samples)]
        for f in drift.features
    ]
    lines.extend(_table(["FEATURE", "PSI", "SAMPLES", ""], rows))
    if drift.drifting_features:
        lines.append(f"    drifting: {', '.join(drift.drifting_features)}")
    return lines


def _quality(monitoring: MonitoringStatus, spec: MonitoringSpec | None) -> list[str]:
    quality = monitoring.quality
    if spec is not None and not spec.quality.enabled:
        return ["  live quality: off (spec.monitoring.quality.enabled: false)"]
    if quality is None:
        needs = " (needs spec.monitoring.capture)" if spec is not None and not spec.capture else ""
        return [f"  live quality: not measured{needs}"]
    min_labelled = spec.quality.min_labelled if spec is not None else None
    delay = "-" if quality.label_delay_seconds is None else _duration(quality.label_delay_seconds)
    row = [
        quality.metric or "-",
        _number(quality.live),
        _number(quality.training),
        _number(quality.bound),
        str(quality.labelled),
        str(quality.captured),
        delay,
        _quality_marker(quality, min_labelled),
    ]
    header = ["METRIC", "LIVE", "TRAINING", "BOUND", "LABELLED", "CAPTURED", "LABEL DELAY", ""]
    return [f"  live quality of {quality.version or '-'}:", *_table(header, [row])]


def _capture(monitoring: MonitoringStatus, spec: MonitoringSpec | None) -> list[str]:
    capture = monitoring.capture
    configured = spec.capture if spec is not None else None
    if capture is None and configured is None:
        return ["  capture: off"]
    state = capture.state if capture is not None else "-"
    destination = (capture.destination if capture is not None else None) or (
        configured.destination if configured is not None else "-"
    )
    line = f"  capture: {state} to {destination}"
    if configured is not None:
        line += f" (sample rate {configured.sample_rate:g})"
    if capture is not None and (capture.written is not None or capture.dropped is not None):
        line += (
            f"; in the window {_records(capture.written)} written, "
            f"{_records(capture.dropped)} dropped"
        )
    return [line]


def _api(kubeconfig: str | None) -> Any:
    from kubernetes import client, config

    try:
        config.load_kube_config(config_file=kubeconfig)
    except config.ConfigException:
        config.load_incluster_config()
    return client.CustomObjectsApi()


def _monitor(args: argparse.Namespace, sleep: Callable[[float], None] = time.sleep) -> int:
    api = _api(args.kubeconfig)
    while True:
        body = api.get_namespaced_custom_object(GROUP, VERSION, args.namespace, PLURAL, args.name)
        view = render(
            args.name, body.get("spec") or {}, body.get("status") or {}, now=datetime.now(UTC)
        )
        if args.watch and sys.stdout.isatty():
            print("\033[2J\033[H", end="")
        print(view, flush=True)
        if not args.watch:
            return 0
        if not sys.stdout.isatty():
            print("---", flush=True)
        sleep(args.interval)


def register(sub: Any) -> None:
    """Add `kiln monitor` to the `kiln` parser."""
    view = sub.add_parser(
        "monitor", help="show a ModelDeployment's drift, live quality and capture state"
    )
    view.add_argument("name", help="ModelDeployment name")
    view.add_argument("-n", "--namespace", default="default")
    view.add_argument("--kubeconfig", default=None)
    view.add_argument("--watch", "-w", action="store_true", help="refresh until interrupted")
    view.add_argument("--interval", type=float, default=5.0, help="refresh period (s)")
    view.set_defaults(func=_monitor)


def _records(value: float | None) -> str:
    """Record counts from `increase()` (extrapolated to fractions) as whole numbers."""
    return "?" if value is None else f"{round(value):d}"
