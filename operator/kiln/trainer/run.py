"""One training run, phase by phase: validate, load, fit, evaluate, upload.

Returns the success report; every failure is a ``TrainingError`` with its reason.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kiln.contract.monitoring import BASELINE_FILE
from kiln.contract.progress import (
    DURATIONS_KEY,
    EVALUATE,
    FIT,
    LOAD,
    PHASE_END_EVENT,
    PHASE_START_EVENT,
    PHASE_STARTS_KEY,
    UPLOAD,
)
from kiln.contract.train_spec import TrainSpec
from kiln.store import ObjectStore, StoreError, join_uri
from kiln.tabular.transforms import EncodedLabelClassifier
from kiln.trainer.artifact import ARTIFACT_FORMAT, dump_model, input_schema
from kiln.trainer.baseline import baseline_bytes, training_baseline
from kiln.trainer.dataset import LoadedDataset, load_dataset
from kiln.trainer.errors import Reason, TrainingError
from kiln.trainer.estimators import prepare_estimator
from kiln.trainer.fitting import fit, predict, split_dataset
from kiln.trainer.logs import EventLog
from kiln.trainer.metrics import compute_metrics, fairness_gap, metrics_for_task, primary_metric
from kiln.trainer.preprocessing import (
    PreparationPlan,
    attach_schema,
    build_pipeline,
    canonical_features,
    check_missing_values_accepted,
    plan_preparation,
    with_categories,
)
from kiln.trainer.versions import library_versions

MODEL_FILE = "model.skops"
REPORT_FILE = "report.json"
SEARCH_REPORT_FILE = "search.json"


class PhaseTimer:
    """Times the phases (`kiln.contract.progress`): a `phase.start` and `phase.end` record
    each, and their start times and durations for the report, a failed phase's too."""

    def __init__(self, log: EventLog, clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._clock = clock
        self.durations: dict[str, float] = {}
        # Unix seconds, the `ts` of the phase's `phase.start` record.
        self.starts: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.starts[name] = self._log.emit(PHASE_START_EVENT, phase=name)["ts"]
        started = self._clock()
        try:
            yield
        finally:
            self.durations[name] = round(self._clock() - started, 3)
        self._log.emit(PHASE_END_EVENT, phase=name, seconds=self.durations[name])

    def report_fields(self) -> dict[str, dict[str, float]]:
        """`phaseStarts` and `durationSeconds`, for the phases entered so far."""
        return {PHASE_STARTS_KEY: dict(self.starts), DURATIONS_KEY: dict(self.durations)}


def train(
    spec: TrainSpec, store: ObjectStore, log: EventLog, timer: PhaseTimer | None = None
) -> dict[str, Any]:
    timer = timer or PhaseTimer(log)
    seed = spec.evaluation.seed

    # Checked before any data moves: a typo in params must not cost a dataset download.
    prepared = prepare_estimator(spec.estimator, spec.params, seed)
    for warning in prepared.warnings:
        log.emit("estimator.warning", level="warning", message=warning)
    task_metrics = metrics_for_task(prepared.is_classifier)
    wrong = [m for m in spec.evaluation.metrics if m not in task_metrics]
    if wrong:
        task = "classifier" if prepared.is_classifier else "regressor"
        raise TrainingError(
            Reason.INVALID_SPEC,
            f"metric(s) {', '.join(wrong)} do not apply to {spec.estimator} (a {task}); "
            f"choose from {', '.join(task_metrics)}",
        )
    metric_names: list[str] = [*spec.evaluation.metrics] or [*task_metrics]

    with timer.phase(LOAD):
        data = load_dataset(spec.dataset, store)
    log.emit("dataset.loaded", uri=data.uri, sha256=data.sha256, rows=data.rows)

    with timer.phase(FIT):
        plan = checked_plan(data, spec, prepared.estimator)
        for warning in plan.warnings:
            log.emit("preparation.warning", level="warning", message=warning)
        prepared_data, duplicates = prepared_table(data, plan, spec)
        split = split_dataset(
            prepared_data, spec.evaluation.test_size, seed, prepared.is_classifier
        )
        # Categories are what the training split holds: the test split stays unseen.
        plan = with_categories(plan, split.x_train)
        model_step = (
            EncodedLabelClassifier(prepared.estimator)
            if prepared.encode_labels
            else prepared.estimator
        )
        estimator = build_pipeline(plan, model_step)
        estimator, fit_warnings = fit(estimator, split, type(prepared.estimator).__name__)
        attach_schema(estimator, plan.schema())
    fit_warnings = [*plan.warnings, *fit_warnings]
    for warning in fit_warnings:
        log.emit("fit.warning", level="warning", message=warning)

    with timer.phase(EVALUATE):
        predictions = predict(estimator, split, prepared.is_classifier)
        metrics = compute_metrics(metric_names, predictions)
        fairness = None
        if data.sensitive_column and split.groups_test is not None:
            primary = primary_metric(spec.evaluation.metrics, prepared.is_classifier)
            fairness = fairness_gap(primary, predictions, split.groups_test, data.sensitive_column)
        baseline = training_baseline(
            plan.columns, split.x_train, predictions, prepared.is_classifier
        )
    log.emit("evaluation.done", metrics=metrics)

    report: dict[str, Any] = {
        "ok": True,
        "metrics": metrics,
        "dataset": {"uri": data.uri, "sha256": data.sha256, "rows": data.rows},
        "split": {
            "trainRows": len(split.x_train),
            "testRows": len(split.x_test),
            "stratified": split.stratified,
            "seed": seed,
            "duplicateRowsDropped": duplicates,
        },
        "estimator": spec.estimator,
        "params": prepared.effective_params,
        "inputSchema": input_schema(plan.schema(), data.frame[data.target], estimator),
        "versions": library_versions(),
    }
    if fairness is not None:
        report["fairness"] = {
            "column": fairness.column,
            "metric": fairness.metric,
            "gap": fairness.gap,
            "groups": fairness.groups,
        }
    if fit_warnings:
        report["warnings"] = fit_warnings

    with timer.phase(UPLOAD):
        model_bytes = dump_model(estimator)
        prefix = spec.artifact_prefix()
        try:
            put = store.put(join_uri(prefix, MODEL_FILE), model_bytes)
            report["artifact"] = {
                "uri": put.uri,
                "sha256": put.sha256,
                "format": ARTIFACT_FORMAT,
                "sizeBytes": put.size,
            }
            profile = store.put(
                join_uri(prefix, BASELINE_FILE),
                baseline_bytes(baseline),
                content_type="application/json",
            )
            report["baseline"] = {"uri": profile.uri, "sha256": profile.sha256}
            report["reportUri"] = join_uri(prefix, REPORT_FILE)
            full = {**report, **timer.report_fields()}
            store.put(
                report["reportUri"],
                json.dumps(full, indent=2, sort_keys=True).encode(),
                content_type="application/json",
            )
            if spec.search is not None:
                report["searchReportUri"] = upload_search_report(spec, store, prefix)
        except StoreError as exc:
            raise TrainingError(Reason.UPLOAD_FAILED, f"cannot upload the model: {exc}") from exc
    log.emit("artifact.uploaded", uri=put.uri, sha256=put.sha256, sizeBytes=put.size)
    log.emit("baseline.uploaded", uri=profile.uri, sha256=profile.sha256)
    report.update(timer.report_fields())
    return report


def upload_search_report(spec: TrainSpec, store: ObjectStore, prefix: str) -> str:
    """`search.json`: the search that chose these params, with every trial's report."""
    from kiln.trainer.trial import gather_trials

    assert spec.search is not None
    document = {
        "search": spec.search.model_dump(by_alias=True, mode="json"),
        "finalParams": spec.params,
        "trials": gather_trials(spec, store),
    }
    put = store.put(
        join_uri(prefix, SEARCH_REPORT_FILE),
        json.dumps(document, indent=2, sort_keys=True).encode(),
        content_type="application/json",
    )
    return put.uri


def checked_plan(data: LoadedDataset, spec: TrainSpec, estimator: Any) -> PreparationPlan:
    """The preparation of this table for this estimator (a final training's or a trial's),
    refused before any fit when it keeps gaps the estimator cannot take."""
    plan = plan_preparation(
        data.frame,
        data.features,
        spec.estimator,
        spec.preprocessing,
        # The target, and the sensitive column unless it is also a feature.
        protected=[c for c in (data.target, data.sensitive_column) if c and c not in data.features],
    )
    check_missing_values_accepted(plan, spec.preprocessing, estimator)
    return plan


def prepared_table(
    data: LoadedDataset, plan: PreparationPlan, spec: TrainSpec
) -> tuple[LoadedDataset, int]:
    """The table with its features in canonical form (and exact duplicates dropped)."""
    frame = data.frame
    duplicates = 0
    if spec.preprocessing is not None and spec.preprocessing.drop_duplicate_rows:
        deduplicated = frame.drop_duplicates()
        duplicates = len(frame) - len(deduplicated)
        frame = deduplicated
    features = canonical_features(frame, plan)
    table = frame.copy()
    for name in features.columns:
        table[name] = features[name]
    prepared = dataclasses.replace(data, frame=table, features=list(features.columns))
    return prepared, duplicates
