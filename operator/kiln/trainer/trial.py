"""A search trial: score one set of params on the training split, never the test split.

The table is split exactly as the final training splits it (`evaluation.testSize`,
`evaluation.seed`), and the test rows are dropped before anything is fitted. The objective
is measured on a held-out share of the training rows or by k-fold cross-validation over
them (stratified for classifiers): the final model's one look at the test split stays
unbiased by the search. Each fold fits its own preparation (imputation, categories,
scaling) on its own fitting rows, as the final pipeline does on the whole training split.

No model is saved: the report (termination message, and `trials/trial-<k>.json` beside the
run's artifacts, which the final training gathers) carries the objective, the mean of
every metric over the folds, and the per-fold objective.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from kiln.contract.progress import FIT, LOAD, UPLOAD
from kiln.contract.train_spec import TrainSpec
from kiln.store import ObjectStore, StoreError
from kiln.tabular.transforms import EncodedLabelClassifier
from kiln.trainer.dataset import load_dataset
from kiln.trainer.errors import Reason, TrainingError
from kiln.trainer.estimators import prepare_estimator
from kiln.trainer.fitting import Split, fit, predict, split_dataset
from kiln.trainer.logs import EventLog
from kiln.trainer.metrics import DIGITS, compute_metrics, metrics_for_task
from kiln.trainer.preprocessing import build_pipeline, with_categories
from kiln.trainer.run import PhaseTimer, checked_plan, prepared_table


def validation_splits(
    split: Split, k_folds: int | None, fraction: float | None, seed: int, stratify: bool
) -> list[Split]:
    """(fit, validation) pairs carved from the training rows of `split` only."""
    x, y = split.x_train, split.y_train
    if k_folds is not None:
        folds: list[tuple[np.ndarray, np.ndarray]]
        try:
            if not stratify:
                raise ValueError("not a classifier")
            folds = list(StratifiedKFold(k_folds, shuffle=True, random_state=seed).split(x, y))
            stratified = True
        except ValueError:
            if len(x) < k_folds:
                raise TrainingError(
                    Reason.INVALID_DATASET,
                    f"{len(x)} training rows cannot make {k_folds} folds",
                ) from None
            folds = list(KFold(k_folds, shuffle=True, random_state=seed).split(x))
            stratified = False
        return [
            Split(x.iloc[a], x.iloc[b], y.iloc[a], y.iloc[b], None, stratified) for a, b in folds
        ]
    assert fraction is not None
    try:
        if not stratify:
            raise ValueError("not a classifier")
        parts = train_test_split(x, y, test_size=fraction, random_state=seed, stratify=y)
        stratified = True
    except ValueError:
        parts = train_test_split(x, y, test_size=fraction, random_state=seed)
        stratified = False
    x_fit, x_val, y_fit, y_val = parts
    if len(x_fit) == 0 or len(x_val) == 0:
        raise TrainingError(Reason.INVALID_DATASET, "too few training rows for a validation split")
    return [Split(x_fit, x_val, y_fit, y_val, None, stratified)]


def run_trial(
    spec: TrainSpec, store: ObjectStore, log: EventLog, timer: PhaseTimer | None = None
) -> dict[str, Any]:
    trial = spec.trial
    assert trial is not None
    timer = timer or PhaseTimer(log)
    seed = spec.evaluation.seed
    # Params first, as a training run checks them: a bad value fails before any download.
    prepared = prepare_estimator(spec.estimator, spec.params, seed)
    task_metrics = metrics_for_task(prepared.is_classifier)
    if trial.metric not in task_metrics:
        task = "classifier" if prepared.is_classifier else "regressor"
        raise TrainingError(
            Reason.INVALID_SPEC,
            f"objective {trial.metric} does not apply to {spec.estimator} (a {task}); "
            f"choose from {', '.join(task_metrics)}",
        )
    names = list(dict.fromkeys([trial.metric, *spec.evaluation.metrics])) or list(task_metrics)

    with timer.phase(LOAD):
        data = load_dataset(spec.dataset, store)
    log.emit("dataset.loaded", uri=data.uri, sha256=data.sha256, rows=data.rows)

    fold_metrics: list[dict[str, float]] = []
    warnings: list[str] = []
    with timer.phase(FIT):
        plan = checked_plan(data, spec, prepared.estimator)
        table, _ = prepared_table(data, plan, spec)
        split = split_dataset(table, spec.evaluation.test_size, seed, prepared.is_classifier)
        folds = validation_splits(
            split, trial.k_folds, trial.validation_fraction, seed, prepared.is_classifier
        )
        for number, fold in enumerate(folds):
            estimator = clone(prepared.estimator)
            step = EncodedLabelClassifier(estimator) if prepared.encode_labels else estimator
            pipeline = build_pipeline(with_categories(plan, fold.x_train), step)
            pipeline, fold_warnings = fit(pipeline, fold, type(prepared.estimator).__name__)
            warnings.extend(fold_warnings)
            measured = compute_metrics(names, predict(pipeline, fold, prepared.is_classifier))
            fold_metrics.append(measured)
            log.emit("trial.fold", trial=trial.number, fold=number, metrics=measured)

    scores = [m[trial.metric] for m in fold_metrics if trial.metric in m]
    if not scores:
        raise TrainingError(
            Reason.TRAINING_FAILED,
            f"the objective {trial.metric} is undefined on every validation split",
        )
    objective = round(float(np.mean(scores)), DIGITS)
    means = {
        name: round(float(np.mean(values)), DIGITS)
        for name in names
        if (values := [m[name] for m in fold_metrics if name in m])
    }
    report: dict[str, Any] = {
        "ok": True,
        "trial": trial.number,
        "metric": trial.metric,
        "objective": objective,
        "metrics": means,
        "folds": [round(v, DIGITS) for v in scores],
        "validation": (
            {"kFolds": trial.k_folds}
            if trial.k_folds is not None
            else {"fraction": trial.validation_fraction}
        ),
        "params": prepared.effective_params,
        "dataset": {"uri": data.uri, "sha256": data.sha256, "rows": data.rows},
        "trainRows": len(split.x_train),
    }
    if warnings:
        report["warnings"] = sorted(set(warnings))
    if not math.isfinite(objective):
        raise TrainingError(Reason.TRAINING_FAILED, f"the objective is {objective}")
    with timer.phase(UPLOAD):
        uri = spec.trial_report_uri(trial.number)
        try:
            store.put(
                uri,
                json.dumps({**report, **timer.report_fields()}, indent=2, sort_keys=True).encode(),
                content_type="application/json",
            )
        except StoreError as exc:
            raise TrainingError(
                Reason.UPLOAD_FAILED, f"cannot upload the trial report: {exc}"
            ) from exc
    report["reportUri"] = uri
    report.update(timer.report_fields())
    log.emit("trial.done", trial=trial.number, objective=objective)
    return report


def gather_trials(spec: TrainSpec, store: ObjectStore) -> list[dict[str, Any]]:
    """Every trial's report of the search, best first; a trial that left none is listed as
    missing (a pod that crashed or failed before writing, see the TrainingJob's status)."""
    search = spec.search
    assert search is not None
    found: list[dict[str, Any]] = []
    for number in range(search.trials):
        try:
            document = json.loads(store.read(spec.trial_report_uri(number)).data)
        except (StoreError, ValueError):
            document = {"trial": number, "ok": False, "report": "missing"}
        found.append(document)
    sign = -1.0 if search.maximize else 1.0

    def key(document: dict[str, Any]) -> tuple[int, float, int]:
        value = document.get("objective")
        if not isinstance(value, (int, float)):
            return (1, 0.0, int(document.get("trial", 0)))
        return (0, sign * float(value), int(document.get("trial", 0)))

    return sorted(found, key=key)
