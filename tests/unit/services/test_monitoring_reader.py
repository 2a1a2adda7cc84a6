"""What monitoring observes: PromQL text, two-label answers, the bounded capture reader."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kiln.api.model_deployment import ModelDeployment
from kiln.api.monitoring import MonitoringSpec
from kiln.contract.monitoring import FeedbackRecord, PredictionRecord, object_key
from kiln.services.monitoring import MonitoringReader, capture_query, drift_query
from kiln.services.prometheus import parse_table_response

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 2, tzinfo=UTC)
DEST = "s3://capture/iris"


def answer(result: list[dict[str, Any]]) -> str:
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})


def test_queries_select_the_stable_track_of_the_version() -> None:
    q = drift_query("prod", "iris", "iris-v1", "300s")
    assert q == (
        'sum by (feature, bin) (increase(kiln_feature_bin_total{namespace="prod",model="iris",'
        'version="iris-v1",track="stable"}[300s]))'
    )
    assert 'model="a\\"b"' in capture_query("prod", 'a"b', "60s")


def test_table_answers() -> None:
    text = answer([
        {"metric": {"feature": "x", "bin": "0"}, "value": [0, "3"]},
        {"metric": {"feature": "x", "bin": "1"}, "value": [0, "NaN"]},
        {"metric": {"feature": "y", "bin": "__missing__"}, "value": [0, "2"]},
    ])  # fmt: skip
    result = parse_table_response(200, text, "feature", "bin")
    assert result.status == "ok" and result.values == {"x": {"0": 3.0}, "y": {"__missing__": 2.0}}
    assert parse_table_response(200, answer([]), "feature", "bin").status == "no_data"
    bad = answer([{"metric": {"feature": "x"}, "value": [0, "1"]}])
    assert parse_table_response(200, bad, "feature", "bin").status == "error"
    assert parse_table_response(503, "down", "feature", "bin").status == "unreachable"


class Bucket:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.read_uris: list[str] = []

    def list(self, prefix: str) -> list[str]:
        return sorted(u for u in self.objects if u.startswith(prefix))

    def read(self, uri: str) -> bytes:
        self.read_uris.append(uri)
        return self.objects[uri]

    def put(self, kind: str, first: datetime, records: list[Any], seq: int = 1) -> str:
        uri = object_key(DEST, "prod", "iris", kind, first, "pod-1", seq)  # type: ignore[arg-type]
        self.objects[uri] = ("\n".join(r.model_dump_json() for r in records) + "\n\n").encode()
        return uri


def md() -> ModelDeployment:
    return ModelDeployment.model_validate(
        {"metadata": {"name": "iris", "namespace": "prod"},
         "spec": {"model": "iris", "followLatestApproved": True}}
    )  # fmt: skip


def spec(max_label_delay: int = 0) -> MonitoringSpec:
    return MonitoringSpec.model_validate(
        {
            "windowSeconds": 300,
            "capture": {"destination": DEST, "flushSeconds": 10},
            "quality": {"maxLabelDelaySeconds": max_label_delay},
        }
    )


def prediction(i: int, at: datetime) -> PredictionRecord:
    return PredictionRecord(id=f"r{i}", time=at, model="iris", version="iris-v1",
                            track="stable", inputs={}, prediction="a")  # fmt: skip


def reader(bucket: Bucket, cap: int = 1000) -> MonitoringReader:
    return MonitoringReader(None, None, None, store_factory=lambda env: bucket, max_records=cap)  # type: ignore[arg-type]


def test_the_window_reads_across_an_hour_and_skips_old_objects() -> None:
    bucket = Bucket()
    start = NOW - timedelta(seconds=300)  # 11:57
    early = start - timedelta(seconds=5)  # filed under hour 11, records reach into the window
    bucket.put("predictions", early, [prediction(1, start + timedelta(seconds=2))])
    bucket.put(
        "predictions", NOW - timedelta(seconds=60), [prediction(2, NOW - timedelta(seconds=60))]
    )
    old = bucket.put("predictions", start - timedelta(minutes=30), [prediction(3, start)])
    bucket.put("feedback", NOW - timedelta(seconds=30),
               [FeedbackRecord(id=f"r{i}", time=NOW - timedelta(seconds=30), label="a")
                for i in (1, 2, 3)])  # fmt: skip
    bucket.objects[DEST + "/prod/iris/feedback/2026/03/01/12/junk.jsonl"] = b"not json\n{}\n"
    result = reader(bucket).read_join({}, md(), "iris-v1", spec(), start, NOW)
    assert result.error is None and result.joined is not None
    assert result.joined.captured == 2 and len(result.joined.pairs) == 2
    assert old not in bucket.read_uris
    assert not result.capped and result.records_read == 5


def test_labels_of_the_window_join_predictions_made_up_to_the_label_delay_before_it() -> None:
    bucket = Bucket()
    start = NOW - timedelta(seconds=300)
    long_ago = start - timedelta(minutes=40)
    bucket.put("predictions", long_ago, [prediction(1, long_ago)])
    bucket.put(
        "predictions", start - timedelta(hours=2), [prediction(2, start - timedelta(hours=2))]
    )
    bucket.put("feedback", NOW - timedelta(seconds=30),
               [FeedbackRecord(id=f"r{i}", time=NOW - timedelta(seconds=30), label="a")
                for i in (1, 2)])  # fmt: skip
    joined = reader(bucket).read_join({}, md(), "iris-v1", spec(3600), start, NOW).joined
    assert joined is not None and len(joined.pairs) == 1
    assert joined.pairs[0].delay_seconds == pytest.approx(44.5 * 60)
    joined = reader(bucket).read_join({}, md(), "iris-v1", spec(0), start, NOW).joined
    assert joined is not None and joined.pairs == []


def test_the_read_is_capped_newest_first() -> None:
    bucket = Bucket()
    for k in range(5):
        at = NOW - timedelta(seconds=200 - 30 * k)
        bucket.put("predictions", at, [prediction(10 * k + j, at) for j in range(10)], seq=k)
    result = reader(bucket, cap=25).read_join({}, md(), "iris-v1", spec(),
                                              NOW - timedelta(seconds=300), NOW)  # fmt: skip
    assert result.capped and result.records_read == 25
    assert result.joined is not None and result.joined.captured == 25
    assert "000004.jsonl" in bucket.read_uris[0]  # the newest object first


def test_a_store_that_fails_is_an_error_not_an_exception() -> None:
    class Down(Bucket):
        def list(self, prefix: str) -> list[str]:
            raise ConnectionError("refused")

    result = reader(Down()).read_join(
        {}, md(), "iris-v1", spec(), NOW - timedelta(seconds=300), NOW
    )
    assert result.error is not None and "refused" in result.error
