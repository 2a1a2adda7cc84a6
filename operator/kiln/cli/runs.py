"""`kiln runs TJ [--run N]`: a TrainingJob's runs, with where each one's trainer is.

One row per run in the status (newest last): its phase, trigger, attempts, the trainer's
phase and for how long it has been in it (a finished attempt: the phase it ended in and how
long that took), a search's trials and best objective, the ModelVersion and the run's
duration. `--run N` adds that run's phase timeline and its active trials' trainers. The
view is pure (`runs_lines(job, now)`, `run_lines(record, now)`), tested without a cluster.
Also reachable as `kubectl kiln runs iris`.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from kiln.api.trainer_progress import TrainerProgress
from kiln.api.training_job import RunRecord, TrainingJob
from kiln.cli.monitor import _duration
from kiln.cli.objects import TRAINING_JOBS, connect
from kiln.cli.trials import _table
from kiln.cli.versions import CliError, add_common


def trainer_cell(trainer: TrainerProgress | None, now: datetime) -> str:
    """`fit 12s`: the phase and its age while the pod runs; `upload (0.6s)` once it ended."""
    if trainer is None:
        return "-"
    if trainer.finished:
        latest = trainer.phases[-1] if trainer.phases else None
        if latest is not None and latest.phase == trainer.phase and latest.seconds is not None:
            return f"{trainer.phase} ({latest.seconds:.3g}s)"
        return f"{trainer.phase} (ended)"
    age = (now - trainer.phase_start_time).total_seconds()
    return f"{trainer.phase} {_duration(age)}"


def _run_duration(record: RunRecord, now: datetime) -> str:
    if record.start_time is None:
        return "-"
    end = record.completion_time or now
    return _duration((end - record.start_time).total_seconds())


def runs_lines(job: TrainingJob, now: datetime) -> list[str]:
    """What `kiln runs TJ` prints."""
    name = job.metadata.name or ""
    runs = sorted(job.status.runs, key=lambda r: r.run)
    if not runs:
        return [f"TrainingJob {name}: no run has started"]
    header = ["RUN", "PHASE", "TRIGGER", "ATTEMPTS", "TRAINER", "TRIALS", "BEST", "VERSION",
              "DURATION"]  # fmt: skip
    rows = []
    for record in runs:
        progress = record.progress
        best = progress.best_objective if progress is not None else None
        rows.append(
            [
                str(record.run),
                record.phase,
                record.trigger or "-",
                str(record.attempts),
                trainer_cell(record.trainer, now),
                progress.trials if progress is not None else "-",
                "-" if best is None else f"{best:.4g}",
                record.model_version or "-",
                _run_duration(record, now),
            ]
        )
    return [f"TrainingJob {name}: {len(runs)} run(s) in the status", *_table(header, rows)]


def run_lines(record: RunRecord, now: datetime) -> list[str]:
    """`--run N`: the run's trainer phase timeline, and its active trials' trainers."""
    lines = [
        f"run {record.run}: {record.phase}" + (f" ({record.message})" if record.message else "")
    ]
    trainer = record.trainer
    if trainer is None:
        lines.append("trainer: no phase seen yet")
    else:
        state = "ended" if trainer.finished else "running"
        lines.append(f"trainer of pod {trainer.pod} ({state}):")
        rows = []
        for phase in trainer.phases:
            if phase.seconds is not None:
                took = f"{phase.seconds:.3g}s"
            elif not trainer.finished and phase.phase == trainer.phase:
                took = f"{_duration((now - phase.start_time).total_seconds())} so far"
            else:
                took = "-"
            rows.append([phase.phase, phase.start_time.strftime("%Y-%m-%dT%H:%M:%SZ"), took])
        lines.extend("  " + line for line in _table(["PHASE", "STARTED", "TOOK"], rows))
    search = record.search
    if search is not None and search.active:
        lines.append("active trials:")
        rows = [
            [str(t.trial), t.phase, t.pod or "-", trainer_cell(t.trainer, now)]
            for t in sorted(search.active, key=lambda t: t.trial)
        ]
        lines.extend("  " + line for line in _table(["TRIAL", "PHASE", "POD", "TRAINER"], rows))
    return lines


def runs(args: argparse.Namespace) -> int:
    job = TrainingJob.model_validate(connect(args).get(TRAINING_JOBS, args.name))
    now = datetime.now(UTC)
    record = None
    if args.run is not None:
        record = next((r for r in job.status.runs if r.run == args.run), None)
        if record is None:
            kept = ", ".join(str(r.run) for r in job.status.runs) or "none"
            raise CliError(f"trainingjob {args.name} has no run {args.run} (kept: {kept})")
    if args.output == "json":
        chosen = [record] if record is not None else job.status.runs
        document: Any = [r.to_wire() for r in chosen]
        print(json.dumps(document, indent=2, sort_keys=True))
        return 0
    print("\n".join(runs_lines(job, now)))
    if record is not None:
        print("\n".join(run_lines(record, now)))
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "runs", help="a TrainingJob's runs: phase, trainer phase and its age, trials, version"
    )
    parser.add_argument("name", help="TrainingJob name")
    parser.add_argument("--run", type=int, help="also this run's phase timeline")
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table")
    add_common(parser)
    parser.set_defaults(func=runs)
