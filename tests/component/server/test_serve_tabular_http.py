"""A real kiln-serve process serving a trainer-built penguins pipeline to tritonclient."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.support.serve_process import ServerProcess
from tests.support.tabular import PENGUIN_COLUMNS, column_inputs, penguins, random_penguin_rows

pytestmark = pytest.mark.component


@pytest.fixture(scope="module", params=["xgboost.XGBClassifier", "lightgbm.LGBMClassifier"])
def served(request: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    model = penguins(request.param, json.dumps({"n_estimators": 20}))
    path = tmp_path_factory.mktemp("model") / "model.skops"
    path.write_bytes(model.artifact)
    process = ServerProcess(path, model.sha256, "--model-name=penguins")
    process.wait_ready()
    yield process, model
    process.stop()


def triton_inputs(rows: pd.DataFrame, binary: bool) -> list[Any]:
    import tritonclient.http as triton

    inputs = []
    for name in PENGUIN_COLUMNS:
        series = rows[name]
        if pd.api.types.is_integer_dtype(series.dtype):
            array, datatype = series.to_numpy(np.int64).reshape(-1, 1), "INT64"
        elif pd.api.types.is_numeric_dtype(series.dtype):
            array, datatype = series.to_numpy(np.float64).reshape(-1, 1), "FP64"
        else:
            array = np.array([str(v) for v in series], dtype=object).reshape(-1, 1)
            datatype = "BYTES"
        tensor = triton.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def test_tritonclient_named_string_and_numeric_inputs_get_the_trainers_predictions(
    served: Any,
) -> None:
    import tritonclient.http as triton

    server, model = served
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    metadata = client.get_model_metadata("penguins")
    assert [(i["name"], i["datatype"]) for i in metadata["inputs"]] == [
        ("island", "BYTES"),
        ("bill_length_mm", "FP64"),
        ("bill_depth_mm", "FP64"),
        ("flipper_length_mm", "FP64"),
        ("body_mass_g", "FP64"),
        ("sex", "BYTES"),
        ("year", "FP64"),
    ]
    # Complete rows (tritonclient's BYTES tensors have no null); NaN travels in FP64.
    rows = model.raw[model.raw["sex"].notna()].iloc[::9].reset_index(drop=True)
    rows.loc[0, "bill_length_mm"] = np.nan
    expected = model.trainer_predict(rows)
    for binary in (True, False):
        outputs = [triton.InferRequestedOutput("predict", binary_data=binary)]
        result = client.infer("penguins", triton_inputs(rows, binary), outputs=outputs)
        predicted = [p.decode() if isinstance(p, bytes) else p for p in result.as_numpy("predict")]
        assert predicted == list(expected)
    client.close()


def test_json_rows_with_nulls_and_unseen_categories_are_served_and_counted(served: Any) -> None:
    server, model = served
    rows = random_penguin_rows(50, seed=4)
    status, body = server.json(
        "POST", "/v2/models/penguins/infer", json.dumps({"inputs": column_inputs(rows)}).encode()
    )
    assert status == 200, body
    assert body["outputs"][0]["data"] == list(model.trainer_predict(rows))
    unseen = int(sum(v not in ("Biscoe", "Dream", "Torgersen") and v is not None
                     for v in rows["island"]))  # fmt: skip
    _, text, _ = server.request("GET", "/metrics")
    assert b'kiln_unseen_categories_total{feature="island",' in text
    line = next(
        raw
        for raw in text.decode().splitlines()
        if raw.startswith('kiln_unseen_categories_total{feature="island"')
    )
    assert float(line.rsplit(" ", 1)[1]) == unseen


def test_a_wrong_datatype_is_a_400_naming_the_column_over_http(served: Any) -> None:
    server, model = served
    inputs = column_inputs(model.raw.iloc[:1])
    inputs[0]["datatype"], inputs[0]["data"] = "FP64", [[1.0]]
    status, body = server.json(
        "POST", "/v2/models/penguins/infer", json.dumps({"inputs": inputs}).encode()
    )
    assert status == 400
    assert "'island'" in body["error"]


def test_the_iris_story_is_unchanged_for_a_trainer_built_pipeline(tmp_path: Any) -> None:
    """kiln-train's iris artifact (now a pipeline) still takes the one [N, 4] tensor."""
    import io

    import skops.io as sio
    import tritonclient.http as triton
    from tests.support.tabular import PENGUINS

    from kiln.trainer.logs import EventLog
    from kiln.trainer.main import run_trainer

    iris = PENGUINS.parent / "iris.csv"
    spec = {
        "model": "iris",
        "estimator": "sklearn.ensemble.RandomForestClassifier",
        "params": {"n_estimators": 50, "max_depth": 4},
        "dataset": {"uri": iris.as_uri(), "target": "species"},
        "evaluation": {"testSize": 0.25, "seed": 7},
        "output": {"uri": (tmp_path / "out").as_uri()},
        "run": {"namespace": "ml", "trainingJob": "iris", "number": 1},
    }
    log = tmp_path / "termination-log"
    env = {"KILN_TRAIN_SPEC": json.dumps(spec), "KILN_TERMINATION_LOG": str(log)}
    assert run_trainer(env, EventLog(io.StringIO())) == 0
    report = json.loads(log.read_bytes())
    artifact = tmp_path / "out" / "ml" / "iris" / "run-1" / "model.skops"
    data = artifact.read_bytes()
    pipeline = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    server = ServerProcess(artifact, report["artifact"]["sha256"])
    try:
        server.wait_ready()
        table = pd.read_csv(iris)
        rows = table.drop(columns="species").to_numpy(np.float64)[::9]
        expected = pipeline.predict(table.drop(columns="species").iloc[::9])
        client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        tensor = triton.InferInput("input-0", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows)
        predicted = [p.decode() for p in client.infer("iris", [tensor]).as_numpy("predict")]
        assert predicted == list(expected)
        client.close()
        _, text, _ = server.request("GET", "/metrics")
        assert b'kiln_predictions_total{class="setosa"' in text
        assert b'kiln_feature_value_sum{feature="petal_width"' in text
    finally:
        server.stop()
