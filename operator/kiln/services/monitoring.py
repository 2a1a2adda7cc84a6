"""What the monitoring of a ModelDeployment's stable track observes: the I/O around
`kiln.core.monitoring`.

- **The training baseline** of the served version (`spec.baseline` of the ModelVersion),
  read through `kiln.store` and verified against its sha256; kept in memory by digest
  (a baseline is immutable, so a digest names one content forever).
- **Input bins** over the window, one PromQL query for every feature:
  `sum by (feature, bin) (increase(kiln_feature_bin_total{namespace, model, version,
  track="stable"}[window]))`, and the capture counters
  `sum by (result) (increase(kiln_capture_records_total{namespace, model}[window]))`.
- **The join**: captured predictions and labels under the hour prefixes the window touches
  (`contract.monitoring.hour_prefixes`, from `flushSeconds` before the window, because an
  object is filed under the hour of its first record and holds at most `flushSeconds` of
  records), newest objects first, at most `MAX_JOIN_RECORDS` records per evaluation (the
  status message says when the cap was reached).

S3 access is the server pods': `spec.artifactStore` (endpoint, credentials Secret read at
the time of the evaluation and never stored), the operator's `KILN_S3_ENDPOINT` otherwise.
Every failure becomes an observation with a reason (Prometheus unreachable, store down,
digest mismatch), never an exception out of the reconcile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import ValidationError

from kiln.api.model_deployment import ModelDeployment
from kiln.api.model_version import ModelVersion
from kiln.api.monitoring import MonitoringSpec
from kiln.api.wire import BASELINE_INTEGRITY_ERROR, BASELINE_UNAVAILABLE
from kiln.contract.monitoring import (
    CAPTURE_RECORDS_METRIC,
    FEATURE_BIN_METRIC,
    Baseline,
    FeedbackRecord,
    PredictionRecord,
    RecordKind,
    hour_prefixes,
)
from kiln.core import monitoring as mon
from kiln.core import quality as ql
from kiln.core.analysis import feature_shares
from kiln.k8s.client import ApiError, KubeClient
from kiln.services.prometheus import PrometheusClient
from kiln.services.s3_access import s3_environment
from kiln.store import ObjectStore, StoreError, normalise_sha256, parse_uri
from kiln.store.baseline import read_baseline
from kiln.store.errors import IntegrityError, InvalidObject
from kiln.store.s3 import make_s3_client

logger = logging.getLogger(__name__)

MAX_CACHED_BASELINES = 64
_STAMP = re.compile(r"-(\d{8}T\d{12}Z)-\d+\.jsonl$")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def drift_query(namespace: str, model: str, version: str, window: str) -> str:
    selector = (
        f'namespace="{_label(namespace)}",model="{_label(model)}",'
        f'version="{_label(version)}",track="stable"'
    )
    return f"sum by (feature, bin) (increase({FEATURE_BIN_METRIC}_total{{{selector}}}[{window}]))"


def capture_query(namespace: str, model: str, window: str) -> str:
    selector = f'namespace="{_label(namespace)}",model="{_label(model)}"'
    return f"sum by (result) (increase({CAPTURE_RECORDS_METRIC}_total{{{selector}}}[{window}]))"


class CaptureStore(Protocol):
    """Listing and reading captured objects (S3 in the operator, a fake in tests)."""

    def list(self, prefix: str) -> list[str]:
        """Every object URI under `prefix` (s3://bucket/prefix/)."""
        ...

    def read(self, uri: str) -> bytes: ...


class S3CaptureStore:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._client = make_s3_client(env)
        self._store = ObjectStore(env=env, s3_client=self._client)

    def list(self, prefix: str) -> list[str]:
        uri = parse_uri(prefix)
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=uri.location, Prefix=uri.s3_key
            )
            return [
                f"s3://{uri.location}/{item['Key']}"
                for page in pages
                for item in page.get("Contents") or []
            ]
        except Exception as exc:  # botocore's errors, a refused connection
            raise StoreError(f"{prefix}: listing failed: {exc}") from exc

    def read(self, uri: str) -> bytes:
        return self._store.read(uri).data


StoreFactory = Callable[[Mapping[str, str]], CaptureStore]


def _first_time(uri: str) -> datetime | None:
    match = _STAMP.search(uri)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


class MonitoringReader:
    def __init__(
        self,
        client: KubeClient,
        prometheus: PrometheusClient,
        default_endpoint: str | None,
        *,
        store_factory: StoreFactory = S3CaptureStore,
        max_records: int = mon.MAX_JOIN_RECORDS,
    ) -> None:
        self.client = client
        self.prometheus = prometheus
        self.default_endpoint = default_endpoint
        self.store_factory = store_factory
        self.max_records = max_records
        self._baselines: dict[str, Baseline] = {}

    async def environment(self, md: ModelDeployment) -> dict[str, str]:
        """The S3 environment of the server pods (spec.artifactStore), values resolved."""
        access = md.spec.artifact_store
        return await s3_environment(
            self.client,
            md.metadata.namespace or "default",
            (access.s3_endpoint if access else None) or self.default_endpoint,
            access.credentials_secret_ref if access else None,
        )

    async def observe(
        self, md: ModelDeployment, version: ModelVersion, spec: MonitoringSpec, now: datetime
    ) -> mon.Observation:
        namespace = md.metadata.namespace or "default"
        name = version.metadata.name or ""
        window = mon.window(spec)
        try:
            env: dict[str, str] | None = await self.environment(md)
            env_problem = ""
        except ApiError as e:
            env, env_problem = None, f"S3 credentials Secret not read: {e}"
        baseline, problem = (None, None)
        if mon.wants_drift(spec):
            baseline, problem = await self.baseline(version, env, env_problem)
        facts = mon.VersionFacts(
            name=name,
            metrics=dict(version.spec.metrics),
            headline=version.status.headline_metric,
            classes=version.spec.input_schema.classes,
            baseline=baseline,
            baseline_problem=problem,
        )
        bins: mon.BinCounts | None = None
        if baseline is not None:
            table = await self.prometheus.query_table(
                drift_query(namespace, md.spec.model, name, window), "feature", "bin"
            )
            bins = mon.BinCounts(table.status, table.values, table.message)
        capture: mon.CaptureCounts | None = None
        join: mon.JoinResult | None = None
        if mon.capture_on(spec):
            vector = await self.prometheus.query_vector(
                capture_query(namespace, md.spec.model, window), "result"
            )
            capture = mon.CaptureCounts(vector.status, vector.values, vector.message)
        if mon.wants_join(spec):
            if env is None:
                join = mon.JoinResult(error=env_problem)
            else:
                start = now - timedelta(seconds=spec.window_seconds)
                join = await asyncio.to_thread(self.read_join, env, md, name, spec, start, now)
        return mon.Observation(facts, bins=bins, capture=capture, join=join)

    # -- the baseline ------------------------------------------------------------------
    async def input_shares(
        self, md: ModelDeployment, version: ModelVersion | None
    ) -> tuple[dict[str, dict[str, float]] | None, str]:
        """A canary version's training shares per feature and bin (the canary drift check's
        inputs comparison), or why there are none."""
        if version is None:
            return None, "the canary version is not known"
        if version.spec.baseline is None:
            return None, f"{version.metadata.name} has no training baseline"
        try:
            env: dict[str, str] | None = await self.environment(md)
            env_problem = ""
        except ApiError as e:
            env, env_problem = None, f"S3 credentials Secret not read: {e}"
        baseline, problem = await self.baseline(version, env, env_problem)
        if baseline is None:
            return None, problem[1] if problem else "the baseline was not read"
        return feature_shares(baseline), ""

    async def baseline(
        self, version: ModelVersion, env: dict[str, str] | None, env_problem: str
    ) -> tuple[Baseline | None, tuple[str, str] | None]:
        ref = version.spec.baseline
        if ref is None:
            return None, None
        digest = normalise_sha256(ref.sha256)
        cached = self._baselines.get(digest)
        if cached is not None:
            return cached, None
        if env is None:
            return None, (BASELINE_UNAVAILABLE, env_problem)
        try:
            baseline = await asyncio.to_thread(read_baseline, ObjectStore(env=env), ref)
        except IntegrityError as e:
            return None, (BASELINE_INTEGRITY_ERROR, f"baseline {e}")
        except InvalidObject as e:
            return None, (BASELINE_UNAVAILABLE, str(e))
        except Exception as e:  # StoreError, OSError, botocore's: the store is not usable
            return None, (BASELINE_UNAVAILABLE, f"baseline {ref.uri} not read: {e}")
        if len(self._baselines) >= MAX_CACHED_BASELINES:
            self._baselines.pop(next(iter(self._baselines)))
        self._baselines[digest] = baseline
        return baseline, None

    # -- the join (in a worker thread: boto3 is blocking) ------------------------------
    def read_join(
        self,
        env: Mapping[str, str],
        md: ModelDeployment,
        version: str,
        spec: MonitoringSpec,
        start: datetime,
        end: datetime,
    ) -> mon.JoinResult:
        capture = spec.capture
        assert capture is not None
        try:
            store = self.store_factory(env)
            budget = [self.max_records]
            # Labels received in the window, for predictions made up to the longest label
            # delay before it.
            predicted_from = start - timedelta(seconds=spec.quality.max_label_delay_seconds)
            common = (capture.destination, capture.flush_seconds)
            predictions = list(
                self._records(store, md, "predictions", *common, predicted_from, end, budget)
            )
            feedback = list(self._records(store, md, "feedback", *common, start, end, budget))
        except Exception as e:  # StoreError, OSError, botocore's: the store is not usable
            return mon.JoinResult(error=f"{type(e).__name__}: {e}")
        joined = ql.join(
            (r for r in predictions if isinstance(r, PredictionRecord)),
            (r for r in feedback if isinstance(r, FeedbackRecord)),
            version=version,
            track="stable",
            start=predicted_from,
            end=end,
        )
        read = len(predictions) + len(feedback)
        return mon.JoinResult(joined, records_read=read, capped=budget[0] <= 0)

    def _records(
        self,
        store: CaptureStore,
        md: ModelDeployment,
        kind: RecordKind,
        destination: str,
        flush_seconds: int,
        start: datetime,
        end: datetime,
        budget: list[int],
    ) -> Iterator[PredictionRecord | FeedbackRecord]:
        namespace = md.metadata.namespace or "default"
        name = md.metadata.name or ""
        earliest = start - timedelta(seconds=flush_seconds)
        uris: list[tuple[datetime | None, str]] = []
        for prefix in hour_prefixes(destination, namespace, name, kind, earliest, end):
            for uri in store.list(prefix):
                first = _first_time(uri)
                if first is not None and not earliest <= first <= end:
                    continue
                uris.append((first, uri))
        oldest = datetime.min.replace(tzinfo=UTC)
        uris.sort(key=lambda item: (item[0] or oldest, item[1]), reverse=True)
        model = PredictionRecord if kind == "predictions" else FeedbackRecord
        for _, uri in uris:
            if budget[0] <= 0:
                return
            for line in store.read(uri).splitlines():
                if budget[0] <= 0:
                    return
                if not line.strip():
                    continue
                try:
                    record: Any = model.model_validate(json.loads(line))
                except (ValueError, ValidationError):
                    logger.debug("unreadable capture record in %s", uri)
                    continue
                budget[0] -= 1
                yield record
