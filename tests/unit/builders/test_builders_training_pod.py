from __future__ import annotations

import json
from typing import Any

import pytest
from tests.support.builders import TrainingJobBuilder

from kiln.api.training_job import TrainingJob
from kiln.builders import training_pod as tp
from kiln.contract.train_spec import TrainSpec

pytestmark = pytest.mark.unit

DEFAULTS = tp.TrainerDefaults(
    image="kiln/trainer:9.9.9", output_uri="s3://kiln-models", s3_endpoint="http://s3.local:8333"
)


def job(**spec_changes: Any) -> TrainingJob:
    """The TrainingJob the pod is built from, with these spec fields (wire names) changed."""
    return TrainingJob.model_validate(
        TrainingJobBuilder("iris-train")
        .uid("uid-42")
        .params(max_iter=300)
        .dataset("s3://datasets/iris.csv")
        .evaluation(seed=7, metrics=["accuracy", "f1_macro"])
        .credentials("s3-creds")
        .spec(**spec_changes)
        .obj()
    )


def container(pod: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod["spec"]["containers"]
    return only


def env(pod: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container(pod)["env"]}


def train_spec_of(pod: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(env(pod)["KILN_TRAIN_SPEC"]["value"])
    return document


def test_pod_identity_owner_and_labels() -> None:
    pod = tp.training_pod(job(), run=3, attempt=2, defaults=DEFAULTS)
    meta = pod["metadata"]
    assert (pod["apiVersion"], pod["kind"]) == ("v1", "Pod")
    assert (meta["name"], meta["namespace"]) == ("iris-train-3-2", "ml")
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "kiln.dev/v1alpha1",
            "kind": "TrainingJob",
            "name": "iris-train",
            "uid": "uid-42",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    labels = meta["labels"]
    assert labels["kiln.dev/training-job"] == "iris-train"
    assert labels["kiln.dev/training-job-uid"] == "uid-42"
    assert labels["kiln.dev/run"] == "3"
    assert labels["kiln.dev/attempt"] == "2"
    assert labels["kiln.dev/model"] == "iris"
    assert labels["app.kubernetes.io/managed-by"] == "kiln"
    assert labels["app.kubernetes.io/component"] == "training"
    assert all(len(v) <= 63 for v in labels.values())


def test_same_inputs_same_manifest() -> None:
    assert tp.training_pod(job(), 1, 1, DEFAULTS) == tp.training_pod(job(), 1, 1, DEFAULTS)


def test_passes_pod_security_restricted() -> None:
    pod = tp.training_pod(job(), 1, 1, DEFAULTS)
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert not any(k in spec for k in ("hostNetwork", "hostPID", "hostIPC"))
    for c in spec["containers"]:
        ctx = c["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert ctx["runAsNonRoot"] is True
        assert ctx["runAsUser"] == 1000
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "privileged" not in ctx
    assert all("hostPath" not in v for v in spec["volumes"])


def test_trainer_reports_through_the_termination_message() -> None:
    c = container(tp.training_pod(job(), 1, 1, DEFAULTS))
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["command"] == ["kiln-train"]


def test_credentials_come_from_the_secret_by_reference_only() -> None:
    variables = env(tp.training_pod(job(), 1, 1, DEFAULTS))
    assert variables["AWS_ACCESS_KEY_ID"] == {
        "name": "AWS_ACCESS_KEY_ID",
        "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}},
    }
    assert variables["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3-creds",
        "key": "AWS_SECRET_ACCESS_KEY",
    }
    assert "value" not in variables["AWS_ACCESS_KEY_ID"]
    assert variables["AWS_ENDPOINT_URL"]["value"] == "http://s3.local:8333"


def test_custom_secret_keys_and_no_secret() -> None:
    ref = {"name": "minio", "accessKeyIdKey": "user", "secretAccessKeyKey": "password"}
    custom = env(tp.training_pod(job(output={"credentialsSecretRef": ref}), 1, 1, DEFAULTS))
    assert custom["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["key"] == "user"
    assert custom["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "password"
    anonymous = env(tp.training_pod(job(output={}), 1, 1, DEFAULTS))
    assert "AWS_ACCESS_KEY_ID" not in anonymous


def test_train_spec_is_what_the_trainer_accepts() -> None:
    """Contract: the env var parses with the trainer's own model (extra fields forbidden)."""
    pod = tp.training_pod(job(), run=4, attempt=1, defaults=DEFAULTS)
    spec = TrainSpec.model_validate(train_spec_of(pod))
    assert spec.model == "iris"
    assert spec.estimator == "sklearn.linear_model.LogisticRegression"
    assert spec.params == {"max_iter": 300}
    assert spec.dataset.uri == "s3://datasets/iris.csv"
    assert spec.evaluation.seed == 7
    assert spec.output.uri == "s3://kiln-models"
    assert (spec.run.namespace, spec.run.training_job, spec.run.number) == ("ml", "iris-train", 4)
    assert spec.artifact_prefix() == "s3://kiln-models/ml/iris-train/run-4"


def test_preprocessing_reaches_the_trainer_as_written() -> None:
    preprocessing = {
        "dropDuplicateRows": True,
        "columns": [{"name": "petal_width", "drop": True}],
    }
    pod = tp.training_pod(job(preprocessing=preprocessing), run=1, attempt=1, defaults=DEFAULTS)
    spec = TrainSpec.model_validate(train_spec_of(pod))
    assert spec.preprocessing is not None
    assert spec.preprocessing.drop_duplicate_rows
    assert [(c.name, c.drop) for c in spec.preprocessing.columns] == [("petal_width", True)]
    assert "preprocessing" not in train_spec_of(tp.training_pod(job(), 1, 1, DEFAULTS))


def test_the_jobs_output_and_endpoint_win_over_the_defaults() -> None:
    output = {"uri": "file:///models", "s3Endpoint": "https://s3.example.com"}
    pod = tp.training_pod(job(output=output), 1, 1, DEFAULTS)
    assert train_spec_of(pod)["output"] == {"uri": "file:///models"}
    assert env(pod)["AWS_ENDPOINT_URL"]["value"] == "https://s3.example.com"


def test_no_output_anywhere_is_a_build_error() -> None:
    with pytest.raises(tp.PodBuildError, match=r"spec\.output\.uri"):
        tp.training_pod(job(output={}), 1, 1, tp.TrainerDefaults())


def test_fairness_metric_leads_the_metric_list() -> None:
    changes = {
        "dataset": {"uri": "s3://d/x.csv", "target": "y", "sensitiveColumn": "sex"},
        "registration": {
            "fairness": {"sensitiveColumn": "sex", "metric": "f1_macro", "maxGap": 0.1}
        },
    }
    pod = tp.training_pod(job(**changes), 1, 1, DEFAULTS)
    assert train_spec_of(pod)["evaluation"]["metrics"] == ["f1_macro", "accuracy"]
    assert train_spec_of(pod)["dataset"]["sensitiveColumn"] == "sex"


def test_image_defaults_from_the_operator_config() -> None:
    assert container(tp.training_pod(job(), 1, 1, DEFAULTS))["image"] == "kiln/trainer:9.9.9"
    custom = tp.training_pod(job(image="registry.local/trainer:1"), 1, 1, DEFAULTS)
    assert container(custom)["image"] == "registry.local/trainer:1"
    assert tp.DEFAULT_TRAINER_IMAGE.startswith("kiln/trainer:")


def test_custom_command_replaces_kiln_train() -> None:
    custom = job(estimator=None, command=["python", "/app/train.py"])
    pod = tp.training_pod(custom, 1, 1, DEFAULTS)
    assert container(pod)["command"] == ["python", "/app/train.py"]
    assert "estimator" not in train_spec_of(pod)


def test_deadline_resources_and_volumes() -> None:
    changes = {
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2}},
        "volumes": [{"name": "data", "claimName": "datasets", "mountPath": "/data"}],
    }
    pod = tp.training_pod(job(**changes), 1, 1, DEFAULTS, active_deadline_seconds=120)
    assert pod["spec"]["activeDeadlineSeconds"] == 120
    c = container(pod)
    assert c["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2}}
    assert c["volumeMounts"] == [{"name": "data", "mountPath": "/data", "readOnly": True}]
    assert pod["spec"]["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": "datasets", "readOnly": True}}
    ]
    assert "activeDeadlineSeconds" not in tp.training_pod(job(), 1, 1, DEFAULTS)["spec"]


def test_params_hash_annotation_tracks_the_params() -> None:
    a = tp.training_pod(job(params={"C": 1}), 1, 1, DEFAULTS)["metadata"]["annotations"]
    b = tp.training_pod(job(params={"C": 2}), 1, 1, DEFAULTS)["metadata"]["annotations"]
    assert a["kiln.dev/params-hash"] != b["kiln.dev/params-hash"]


def test_long_job_names_give_valid_pod_names_and_labels() -> None:
    long_job = job().model_copy(deep=True)
    long_job.metadata.name = "a-very-long-training-job-name-" + "x" * 60
    pod = tp.training_pod(long_job, 10, 3, DEFAULTS)
    assert len(pod["metadata"]["name"]) <= 63
    assert pod["metadata"]["name"].endswith("-10-3")
    assert len(pod["metadata"]["labels"]["kiln.dev/training-job"]) <= 63


def test_a_job_without_uid_cannot_own_a_pod() -> None:
    unsaved = job().model_copy(deep=True)
    unsaved.metadata.uid = None
    with pytest.raises(tp.PodBuildError):
        tp.training_pod(unsaved, 1, 1, DEFAULTS)


SEARCH = {
    "maxTrials": 4,
    "objective": {"metric": "accuracy", "validation": {"kFolds": 3}},
    "parameters": [{"name": "C", "values": [0.1, 1.0]}],
}


def test_a_trial_pod_is_a_run_pod_with_the_trials_values_name_and_label() -> None:
    searching = job(search=SEARCH)
    run_pod = tp.training_pod(searching, 2, 1, DEFAULTS)
    trial = tp.SearchPod(params={"C": 0.1}, trial=3)
    pod = tp.training_pod(searching, 2, 1, DEFAULTS, 120, search=trial)
    assert pod["metadata"]["name"] == "iris-train-2-t3-1"
    assert pod["metadata"]["labels"]["kiln.dev/trial"] == "3"
    assert pod["metadata"]["labels"]["kiln.dev/run"] == "2"
    assert pod["metadata"]["ownerReferences"] == run_pod["metadata"]["ownerReferences"]
    assert pod["spec"]["securityContext"] == run_pod["spec"]["securityContext"]
    assert container(pod)["securityContext"] == container(run_pod)["securityContext"]
    assert container(pod)["resources"] == container(run_pod)["resources"]
    assert pod["spec"]["activeDeadlineSeconds"] == 120
    parsed = TrainSpec.model_validate(train_spec_of(pod))
    assert parsed.trial is not None and parsed.search is None
    assert (parsed.trial.number, parsed.trial.k_folds, parsed.trial.maximize) == (3, 3, True)
    assert parsed.params["C"] == 0.1
    assert {k: v for k, v in parsed.params.items() if k != "C"} == dict(searching.spec.params)


def test_the_final_pod_trains_the_best_values_and_names_the_search() -> None:
    summary = {"strategy": "random", "seed": 7, "trials": 4, "bestTrial": 1,
               "metric": "accuracy", "maximize": True, "bestObjective": 0.97}  # fmt: skip
    final = tp.SearchPod(params={"C": 1.0}, summary=summary)
    pod = tp.training_pod(job(search=SEARCH), 2, 1, DEFAULTS, search=final)
    assert pod["metadata"]["name"] == "iris-train-2-1"
    assert "kiln.dev/trial" not in pod["metadata"]["labels"]
    parsed = TrainSpec.model_validate(train_spec_of(pod))
    assert parsed.trial is None and parsed.search is not None
    assert parsed.search.best_trial == 1 and parsed.params["C"] == 1.0
