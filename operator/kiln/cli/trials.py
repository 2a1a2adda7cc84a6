"""`kiln trials TJ [--run N]`: every trial of a run's hyperparameter search, best first.

Two sources, the fuller one when it can be read:
- the run's `search.json` in the object store (every trial's report, written by the final
  training; its URI is in the ModelVersion's `lineage.kiln.dev/search` annotation), read
  with the credentials of this shell as `kiln baseline` does;
- else the TrainingJob's `status.runs[].search`, which keeps the 5 best trials, the 5
  latest failures and the active ones, with the counts of all.

Attempts and durations come from the status where it still holds the trial (a report does
not know how many pods its trial took). A footer line says which source was used. The view
is `build_view(...)` and `trials_lines(...)`, pure functions of the objects and the report,
so it is tested without a cluster. Also reachable as `kubectl kiln trials iris`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from kiln.api.metrics import METRIC_DIRECTIONS, higher_is_better
from kiln.api.search import SearchStatus, TrialRecord
from kiln.api.training_job import RunRecord, TrainingJob
from kiln.api.wire import LINEAGE_SEARCH
from kiln.cli.monitor import _duration
from kiln.cli.objects import MODEL_VERSIONS, TRAINING_JOBS, KilnObjects, connect, read_json
from kiln.cli.versions import CliError, add_common

Obj = Mapping[str, Any]
WINNER_MARK = "*"
MAX_MESSAGE_SHOWN = 200


@dataclass
class TrialRow:
    trial: int
    phase: str
    params: dict[str, Any] = field(default_factory=dict)
    objective: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    attempts: int | None = None
    seconds: float | None = None
    reason: str | None = None
    message: str | None = None


@dataclass
class TrialsView:
    training_job: str
    run: int
    metric: str | None
    maximize: bool
    parameters: list[str]
    trials: list[TrialRow]
    total: int
    source: str  # "report" or "status"
    footer: str
    winner: int | None = None
    # Whether the winner is chosen (the search finished) or only the best so far.
    decided: bool = False
    report_uri: str | None = None
    model_version: str | None = None


def select_run(job: TrainingJob, run: int | None) -> RunRecord:
    """Run `run` of the job, or its newest run that has a search."""
    name = job.metadata.name or "?"
    if run is not None:
        for record in job.status.runs:
            if record.run == run:
                if record.search is None:
                    raise CliError(f"run {run} of TrainingJob {name} has no search (spec.search)")
                return record
        kept = ", ".join(str(r.run) for r in job.status.runs) or "none"
        raise CliError(f"TrainingJob {name} has no run {run} (runs kept: {kept})")
    searched = [r for r in job.status.runs if r.search is not None]
    if not searched:
        raise CliError(f"TrainingJob {name} has no run with a search (spec.search)")
    return max(searched, key=lambda r: r.run)


def search_annotation(version: Obj | None) -> dict[str, Any]:
    """The `lineage.kiln.dev/search` annotation of a ModelVersion, parsed ({} if none)."""
    if version is None:
        return {}
    text = ((version.get("metadata") or {}).get("annotations") or {}).get(LINEAGE_SEARCH)
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _record_seconds(record: TrialRecord, now: datetime | None) -> float | None:
    if record.start_time is None:
        return None
    end = record.completion_time or now
    return None if end is None else (end - record.start_time).total_seconds()


def _from_record(record: TrialRecord, now: datetime | None) -> TrialRow:
    return TrialRow(
        trial=record.trial,
        phase=record.phase,
        params=dict(record.params),
        objective=record.objective,
        metrics=dict(record.metrics),
        attempts=record.attempts,
        seconds=_record_seconds(record, now),
        reason=record.reason,
        message=record.message,
    )


def status_rows(search: SearchStatus, now: datetime | None = None) -> list[TrialRow]:
    """The trials the status still holds: the best, the latest failures, the active."""
    rows: dict[int, TrialRow] = {}
    for record in [*search.best, *search.failures, *search.active]:
        rows.setdefault(record.trial, _from_record(record, now))
    return list(rows.values())


def report_rows(
    document: Obj, search: SearchStatus | None, parameters: list[str], now: datetime | None
) -> list[TrialRow]:
    """Every trial of search.json, with attempts, durations and failure reasons from the
    status where it still holds the trial."""
    known = {r.trial: r for r in status_rows(search, now)} if search is not None else {}
    rows: list[TrialRow] = []
    for report in document.get("trials") or []:
        if not isinstance(report, dict) or not isinstance(report.get("trial"), int):
            continue
        number = report["trial"]
        recorded = known.get(number)
        if report.get("ok") is True and isinstance(report.get("objective"), int | float):
            params = report.get("params") or {}
            if parameters:  # the report has every effective param; show the searched ones
                params = {k: params[k] for k in parameters if k in params}
            durations = report.get("durationSeconds") or {}
            seconds = sum(v for v in durations.values() if isinstance(v, int | float))
            rows.append(
                TrialRow(
                    trial=number,
                    phase="Succeeded",
                    params=(recorded.params if recorded and recorded.params else params),
                    objective=float(report["objective"]),
                    metrics={
                        k: float(v)
                        for k, v in (report.get("metrics") or {}).items()
                        if isinstance(v, int | float)
                    },
                    attempts=recorded.attempts if recorded else None,
                    seconds=recorded.seconds if recorded else (seconds or None),
                )
            )
        elif recorded is not None and recorded.phase == "Failed":
            rows.append(recorded)
        else:
            # A trial that left no report: failed (its reason is in the status only while it
            # is among the latest failures) or crashed before writing, e.g. OOMKilled.
            rows.append(
                TrialRow(
                    trial=number,
                    phase="Failed",
                    params=recorded.params if recorded else {},
                    attempts=recorded.attempts if recorded else None,
                    seconds=recorded.seconds if recorded else None,
                    reason=(recorded.reason if recorded else None) or "NoReport",
                    message=(recorded.message if recorded else None)
                    or "the trial left no report (see the run's Events and pod logs)",
                )
            )
    return rows


def sort_trials(rows: list[TrialRow], maximize: bool) -> list[TrialRow]:
    """Succeeded by objective (best first, ties: the lower trial number), then the active
    trials, then the failed ones, each by trial number."""
    sign = -1.0 if maximize else 1.0

    def key(row: TrialRow) -> tuple[int, float, int]:
        if row.phase == "Succeeded" and row.objective is not None:
            return (0, sign * row.objective, row.trial)
        return (1 if row.phase in ("Pending", "Running") else 2, 0.0, row.trial)

    return sorted(rows, key=key)


def _direction(
    metric: str | None, report: Obj | None, lineage: Obj, job: TrainingJob
) -> tuple[str | None, bool]:
    """The objective's metric and whether it is maximized, from what recorded the run."""
    summary = (report or {}).get("search") or {}
    if isinstance(summary.get("maximize"), bool):
        return summary.get("metric") or metric, summary["maximize"]
    objective = lineage.get("objective") or {}
    if objective.get("direction") in ("maximize", "minimize"):
        return objective.get("metric") or metric, objective["direction"] == "maximize"
    if metric is None and job.spec.search is not None:
        metric = job.spec.search.objective.metric
    if metric in METRIC_DIRECTIONS:
        return metric, higher_is_better(metric)
    return metric, True


def _parameters(lineage: Obj, job: TrainingJob, search: SearchStatus) -> list[str]:
    """The searched parameters' names, in the order of the space."""
    space = lineage.get("space")
    if isinstance(space, list) and space:
        return [str(p.get("name")) for p in space if isinstance(p, dict) and p.get("name")]
    names: list[str] = []
    for record in [*search.best, *search.failures, *search.active]:
        names.extend(k for k in record.params if k not in names)
    if names:
        return names
    best = lineage.get("bestParams")
    if isinstance(best, dict) and best:
        return list(best)
    if job.spec.search is not None:
        return [p.name for p in job.spec.search.parameters]
    return []


def build_view(
    job: TrainingJob,
    record: RunRecord,
    version: Obj | None = None,
    report: Obj | None = None,
    report_error: str | None = None,
    now: datetime | None = None,
) -> TrialsView:
    """The trials of one run: from its search.json when given, else from its status."""
    search = record.search or SearchStatus()
    lineage = search_annotation(version)
    metric = record.progress.objective if record.progress is not None else None
    metric, maximize = _direction(metric, report, lineage, job)
    parameters = _parameters(lineage, job, search)
    report_uri = lineage.get("report") if isinstance(lineage.get("report"), str) else None
    total = search.total or int(lineage.get("trials") or 0)
    if report is not None:
        rows = report_rows(report, record.search, parameters, now)
        source = "report"
        footer = f"{len(rows)} of {total or len(rows)} trials (from {report_uri})"
    else:
        rows = status_rows(search, now)
        source = "status"
        succeeded = sum(1 for r in rows if r.phase == "Succeeded")
        parts = [f"{succeeded} best of {search.succeeded} succeeded"]
        failed = sum(1 for r in rows if r.phase == "Failed")
        if search.failed:
            parts.append(f"{failed} latest of {search.failed} failed")
        active = sum(1 for r in rows if r.phase in ("Pending", "Running"))
        if active:
            parts.append(f"{active} active")
        waiting = max(0, total - search.started)
        if waiting:
            parts.append(f"{waiting} not started")
        if report_error:
            why = f"cannot read the full report: {report_error}"
        elif record.model_version is None:
            why = "the full report appears once the run registers"
        elif version is None:
            why = f"ModelVersion {record.model_version} not found"
        else:
            why = "no full report recorded for this version"
        footer = f"{', '.join(parts)}, {total} trials in all (status; {why})"
    rows = sort_trials(rows, maximize)
    decided = record.model_version is not None or search.stage == "Training"
    winner = lineage.get("bestTrial")
    if not isinstance(winner, int):
        best = rows[0] if rows and rows[0].phase == "Succeeded" else None
        winner = best.trial if best is not None else None
    return TrialsView(
        training_job=job.metadata.name or "",
        run=record.run,
        metric=metric,
        maximize=maximize,
        parameters=parameters,
        trials=rows,
        total=total,
        source=source,
        footer=footer,
        winner=winner,
        decided=decided,
        report_uri=report_uri,
        model_version=record.model_version,
    )


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value if isinstance(value, str) else json.dumps(value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def trials_lines(view: TrialsView) -> list[str]:
    """What `kiln trials` prints (pure: a view in, lines out)."""
    direction = "maximize" if view.maximize else "minimize"
    lines = [
        f"TrainingJob {view.training_job} run {view.run}: objective {view.metric or '?'} "
        f"({direction})" + (f" → {view.model_version}" if view.model_version else "")
    ]
    others = sorted({m for r in view.trials for m in r.metrics if m != view.metric})
    header = [
        "",
        "TRIAL",
        "PHASE",
        *view.parameters,
        (view.metric or "OBJECTIVE").upper(),
        *others,
        "ATTEMPTS",
        "DURATION",
    ]
    rows = []
    for row in view.trials:
        mark = WINNER_MARK if row.trial == view.winner and row.phase == "Succeeded" else ""
        rows.append(
            [
                mark,
                str(row.trial),
                row.phase,
                *(_value(row.params.get(p)) for p in view.parameters),
                _value(row.objective),
                *(_value(row.metrics.get(m)) for m in others),
                _value(row.attempts),
                "-" if row.seconds is None else _duration(row.seconds),
            ]
        )
    if rows:
        lines.extend(_table(header, rows))
    else:
        lines.append("(no trial has started yet)")
    failed = [r for r in view.trials if r.phase == "Failed"]
    if failed:
        lines.append("failed trials:")
        for row in failed:
            message = (row.message or "").strip()
            if len(message) > MAX_MESSAGE_SHOWN:
                message = message[: MAX_MESSAGE_SHOWN - 1] + "…"
            lines.append(
                f"  trial {row.trial}: {row.reason or 'Failed'}"
                + (f": {message}" if message else "")
            )
    if view.winner is not None and any(r.trial == view.winner for r in view.trials):
        what = "the winner" if view.decided else "the best so far (the search is running)"
        lines.append(f"{WINNER_MARK} {what}")
    lines.append(view.footer)
    return lines


def view_json(view: TrialsView) -> dict[str, Any]:
    document = asdict(view)
    document["direction"] = "maximize" if view.maximize else "minimize"
    del document["maximize"]
    return document


def load_view(objects: KilnObjects, name: str, run: int | None) -> TrialsView:
    """Fetch the TrainingJob, its run's ModelVersion and search.json, and build the view."""
    job = TrainingJob.model_validate(objects.get(TRAINING_JOBS, name))
    record = select_run(job, run)
    version = objects.find(MODEL_VERSIONS, record.model_version) if record.model_version else None
    report, error = None, None
    uri = search_annotation(version).get("report")
    if isinstance(uri, str) and uri:
        from kiln.store import StoreError

        try:
            found = read_json(uri)
        except (StoreError, ValueError) as e:
            error = f"{uri}: {e}"
        else:
            if isinstance(found, dict) and isinstance(found.get("trials"), list):
                report = found
            else:
                error = f"{uri} is not a search report"
    return build_view(job, record, version, report, error, now=datetime.now(UTC))


def trials(args: argparse.Namespace) -> int:
    view = load_view(connect(args), args.name, args.run)
    if args.output == "json":
        print(json.dumps(view_json(view), indent=2, sort_keys=True, default=str))
        return 0
    print("\n".join(trials_lines(view)))
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "trials",
        help="every trial of a run's hyperparameter search, best first, with params and metrics",
    )
    parser.add_argument("name", help="TrainingJob name")
    parser.add_argument(
        "--run", type=int, help="run number (default: the newest run with a search)"
    )
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table")
    add_common(parser)
    parser.set_defaults(func=trials)
