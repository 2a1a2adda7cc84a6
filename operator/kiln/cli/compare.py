"""`kiln compare A B`: two ModelVersions side by side, differences marked.

A and B are ModelVersion names (`iris-v2`) or TrainingJob runs (`iris/3`, resolved through
the run's `status.runs[].modelVersion`, else the version labelled with that job and run).
Rows: where each came from (TrainingJob run, created), how it was trained (trainer image,
estimator, the merged params of `lineage.kiln.dev/params`, seed, the search that chose
them), on what (dataset URI and sha256), with what (framework and library versions), how
it scored (metrics, with B - A as a delta; the fairness gap) and what the registry decided
(approval, each gate). A row whose values differ is marked `≠`.

`compare_rows(a, b)` and `compare_lines(...)` are pure functions of the two objects, so the
view is tested without a cluster. Also reachable as `kubectl kiln compare iris-v2 iris-v3`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from kiln.api.wire import (
    LINEAGE_DATASET,
    LINEAGE_ESTIMATOR,
    LINEAGE_PARAMS,
    LINEAGE_PARAMS_HASH,
    LINEAGE_SEED,
    LINEAGE_TRAINER_IMAGE,
    LINEAGE_TRAINING_JOB,
    RUN_LABEL,
    TRAINING_JOB_LABEL,
)
from kiln.cli.objects import MODEL_VERSIONS, TRAINING_JOBS, KilnObjects, connect
from kiln.cli.trials import search_annotation
from kiln.cli.versions import CliError, add_common

Obj = Mapping[str, Any]
DIFFERS = "≠"
# Digests are compared in full; the table shows enough of them to tell them apart.
DIGEST_SHOWN = 16


@dataclass
class Row:
    field: str
    a: Any
    b: Any
    differs: bool
    delta: float | None = None


def resolve(objects: KilnObjects, ref: str) -> dict[str, Any]:
    """The ModelVersion `ref` names: `iris-v2`, or run 3 of TrainingJob iris as `iris/3`."""
    if "/" not in ref:
        return objects.get(MODEL_VERSIONS, ref)
    job_name, _, run_text = ref.partition("/")
    if not job_name or not run_text.isdigit():
        raise CliError(f"{ref}: expected a ModelVersion name or TRAININGJOB/RUN, e.g. iris/3")
    run = int(run_text)
    job = objects.get(TRAINING_JOBS, job_name)
    record = next(
        (r for r in (job.get("status") or {}).get("runs") or [] if r.get("run") == run), None
    )
    if record is not None and record.get("modelVersion"):
        return objects.get(MODEL_VERSIONS, str(record["modelVersion"]))
    # The run's record may be pruned by the history limits; its version keeps the labels.
    labelled = objects.list(MODEL_VERSIONS, f"{TRAINING_JOB_LABEL}={job_name},{RUN_LABEL}={run}")
    if labelled:
        return labelled[0]
    state = f" (phase {record.get('phase', '?')})" if record is not None else ""
    raise CliError(f"run {run} of TrainingJob {job_name} has no ModelVersion{state}")


def _annotations(mv: Obj) -> Mapping[str, str]:
    return (mv.get("metadata") or {}).get("annotations") or {}


def _params(mv: Obj) -> dict[str, Any] | None:
    text = _annotations(mv).get(LINEAGE_PARAMS)
    if text is None:
        return None
    try:
        params = json.loads(text)
    except ValueError:
        return None
    return params if isinstance(params, dict) else None


def _source(mv: Obj) -> str | None:
    source = (mv.get("spec") or {}).get("source") or {}
    job = source.get("name") or _annotations(mv).get(LINEAGE_TRAINING_JOB, "").rpartition("/")[2]
    if not job:
        return None
    run = source.get("run") or ((mv.get("metadata") or {}).get("labels") or {}).get(RUN_LABEL)
    return f"{job}/{run}" if run is not None else job


def _dataset(mv: Obj) -> tuple[str | None, str | None]:
    data = (mv.get("spec") or {}).get("trainingData") or {}
    if data.get("uri"):
        return data.get("uri"), data.get("sha256")
    recorded = _annotations(mv).get(LINEAGE_DATASET)
    if not recorded:
        return None, None
    uri, _, digest = recorded.rpartition("@")
    return uri, digest.removeprefix("sha256:")


def _gate(check: Obj) -> str:
    verdict = "pass" if check.get("passed") else "FAIL"
    parts = [verdict]
    if check.get("value") is not None:
        parts.append(_number(check["value"]))
    if check.get("min") is not None:
        parts.append(f"≥ {_number(check['min'])}")
    if check.get("max") is not None:
        parts.append(f"≤ {_number(check['max'])}")
    if check.get("baseline") is not None:
        against = check.get("baselineVersion") or "approved"
        parts.append(f"vs {against} {_number(check['baseline'])}")
    return " ".join(parts)


def _facts(mv: Obj) -> dict[str, Any]:
    """Every compared field of one version, in the order shown (absent fields: None)."""
    spec, meta = mv.get("spec") or {}, mv.get("metadata") or {}
    annotations = _annotations(mv)
    approval = (mv.get("status") or {}).get("approval") or {}
    search = search_annotation(mv)
    uri, digest = _dataset(mv)
    facts: dict[str, Any] = {
        "trainingJob": _source(mv),
        "created": meta.get("creationTimestamp"),
        "trainerImage": annotations.get(LINEAGE_TRAINER_IMAGE),
        "estimator": annotations.get(LINEAGE_ESTIMATOR),
    }
    params = _params(mv)
    if params is None:
        # Params too large for an annotation are kept as a hash only.
        facts["paramsHash"] = annotations.get(LINEAGE_PARAMS_HASH)
    else:
        facts.update({f"params.{k}": v for k, v in sorted(params.items())})
    seed = annotations.get(LINEAGE_SEED)
    facts["seed"] = int(seed) if seed is not None and seed.isdigit() else seed
    objective = search.get("objective") or {}
    facts["search.strategy"] = search.get("strategy")
    facts["search.trials"] = search.get("trials")
    facts["search.failedTrials"] = search.get("failed")
    facts["search.objective"] = (
        f"{objective.get('metric')} ({objective.get('direction')})" if objective else None
    )
    facts["search.bestObjective"] = search.get("bestObjective")
    facts["dataset.uri"] = uri
    facts["dataset.sha256"] = digest
    facts["framework"] = spec.get("framework")
    facts.update(
        {f"library.{k}": v for k, v in sorted((spec.get("libraryVersions") or {}).items())}
    )
    facts.update({f"metrics.{k}": v for k, v in sorted((spec.get("metrics") or {}).items())})
    fairness = spec.get("fairness") or {}
    if fairness:
        facts[f"fairness.{fairness.get('column')}.{fairness.get('metric')}.gap"] = fairness.get(
            "gap"
        )
    facts["approval"] = approval.get("state", "Pending")
    facts["approval.by"] = approval.get("by")
    facts.update({f"gate.{c.get('name')}": _gate(c) for c in approval.get("checks") or []})
    return facts


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _merged_order(first: list[str], second: list[str]) -> list[str]:
    """Every field of both, `first`'s order, each field only `second` has placed after the
    field it follows there (so a parameter only B sets stays among the params)."""
    order = list(first)
    previous: str | None = None
    for name in second:
        if name not in order:
            order.insert(order.index(previous) + 1 if previous is not None else 0, name)
        previous = name
    return order


def compare_rows(a: Obj, b: Obj) -> list[Row]:
    """The fields of both versions, with the differing ones marked."""
    fa, fb = _facts(a), _facts(b)
    rows = []
    for name in _merged_order(list(fa), list(fb)):
        va, vb = fa.get(name), fb.get(name)
        if va is None and vb is None:
            continue
        delta = None
        scored = name.startswith(("metrics.", "search.best"))
        if scored and isinstance(va, int | float) and isinstance(vb, int | float):
            delta = float(vb) - float(va)
        rows.append(Row(field=name, a=va, b=vb, differs=va != vb, delta=delta))
    return rows


def _shown(field: str, value: Any) -> str:
    if value is None:
        return "-"
    if field.endswith("sha256") and isinstance(value, str) and len(value) > DIGEST_SHOWN:
        return value[:DIGEST_SHOWN] + "…"
    if _is_number(value):
        return _number(value)
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def compare_lines(name_a: str, name_b: str, rows: list[Row]) -> list[str]:
    """What `kiln compare` prints (pure: rows in, lines out)."""
    header = ["", "FIELD", name_a, name_b, "Δ (B-A)"]
    table = [
        [
            DIFFERS if row.differs else "",
            row.field,
            _shown(row.field, row.a),
            _shown(row.field, row.b),
            "" if row.delta is None or not row.differs else f"{row.delta:+.4g}",
        ]
        for row in rows
    ]
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *table]
    ]
    differing = sum(row.differs for row in rows)
    lines.append(f"{DIFFERS} {differing} of {len(rows)} fields differ")
    return lines


def compare(args: argparse.Namespace) -> int:
    objects = connect(args)
    a, b = resolve(objects, args.a), resolve(objects, args.b)
    name_a, name_b = (str((mv.get("metadata") or {}).get("name", "?")) for mv in (a, b))
    rows = compare_rows(a, b)
    if args.output == "json":
        document = {"a": name_a, "b": name_b, "rows": [asdict(r) for r in rows]}
        print(json.dumps(document, indent=2, sort_keys=True, default=str))
        return 0
    print("\n".join(compare_lines(name_a, name_b, rows)))
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "compare",
        help="two ModelVersions (or TrainingJob runs, iris/3) side by side, differences marked",
    )
    parser.add_argument("a", help="ModelVersion name (iris-v2) or TRAININGJOB/RUN (iris/3)")
    parser.add_argument("b", help="the other one")
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table")
    add_common(parser)
    parser.set_defaults(func=compare)
