"""A small async PromQL client: instant queries that return one number or say why not.

Three answers are kept apart, because canary analysis treats them differently from a pass:
- `ok`: the query returned exactly one finite number (a scalar, or a one-sample vector);
- `no_data`: Prometheus answered, but with an empty vector or NaN;
- `unreachable` / `error`: no answer (connection refused, timeout, 5xx) or the query was
  rejected (bad PromQL, several series where one number was expected).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from kiln.core.analysis import QueryResult, QueryStatus, VectorQuery, VectorResult

DEFAULT_TIMEOUT_SECONDS = 5.0


class PrometheusClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def query(self, promql: str) -> QueryResult:
        """One instant query (`/api/v1/query`) reduced to a single number."""
        answer = await self._post(promql)
        if isinstance(answer, str):
            return QueryResult("unreachable", None, answer)
        return parse_response(*answer)

    async def query_vector(self, promql: str, by: str) -> VectorResult:
        """One instant query whose series are told apart by the label `by`."""
        answer = await self._post(promql)
        if isinstance(answer, str):
            return VectorResult("unreachable", {}, answer)
        return parse_vector_response(*answer, by=by)

    async def query_table(self, promql: str, row: str, column: str) -> TableResult:
        """One instant query whose series are told apart by two labels (`sum by (feature,
        bin) (…)`): row label value -> column label value -> number."""
        answer = await self._post(promql)
        if isinstance(answer, str):
            return TableResult("unreachable", {}, answer)
        return parse_table_response(*answer, row=row, column=column)

    async def _post(self, promql: str) -> tuple[int, str] | str:
        """(HTTP status, body), or why Prometheus could not be reached."""
        url = f"{self.base_url}/api/v1/query"
        try:
            async with self._client().post(
                url,
                data={"query": promql},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                return response.status, await response.text()
        except TimeoutError:
            return f"timed out after {self.timeout:g} s ({url})"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc} ({url})"

    async def query_many(self, queries: Mapping[str, str]) -> dict[str, QueryResult]:
        keys = list(queries)
        answers = await asyncio.gather(*(self.query(queries[k]) for k in keys))
        return dict(zip(keys, answers, strict=True))

    async def query_vectors(self, queries: Mapping[str, VectorQuery]) -> dict[str, VectorResult]:
        keys = list(queries)
        answers = await asyncio.gather(
            *(self.query_vector(queries[k].promql, queries[k].by) for k in keys)
        )
        return dict(zip(keys, answers, strict=True))


def _success_data(status: int, text: str) -> dict[str, Any] | QueryResult:
    """The `data` of a successful answer, or the failure as a QueryResult."""
    import json

    try:
        body: Any = json.loads(text)
    except ValueError:
        kind: QueryStatus = "unreachable" if status >= 500 or status in (0, 404) else "error"
        return QueryResult(kind, None, f"HTTP {status}: not a Prometheus answer: {text[:200]}")
    if not isinstance(body, dict):
        return QueryResult("error", None, f"HTTP {status}: unexpected answer {text[:200]}")
    if body.get("status") != "success":
        failed: QueryStatus = "unreachable" if status >= 500 and status != 422 else "error"
        error = f"{body.get('errorType', 'error')}: {body.get('error', text[:200])}"
        return QueryResult(failed, None, f"HTTP {status}: {error}")
    data = body.get("data") or {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class TableResult:
    """What one instant query by two labels gave, or why not (as VectorResult)."""

    status: QueryStatus
    values: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    message: str = ""


def parse_table_response(status: int, text: str, row: str, column: str) -> TableResult:
    """Turn an HTTP answer of `/api/v1/query` into row -> column -> number (pure)."""
    data = _success_data(status, text)
    if isinstance(data, QueryResult):
        return TableResult(data.status, {}, data.message)
    if data.get("resultType") != "vector":
        return TableResult("error", {}, f"result type {data.get('resultType')!r} is not a vector")
    values: dict[str, dict[str, float]] = {}
    for series in data.get("result") or []:
        labels = series.get("metric") or {}
        if labels.get(row) is None or labels.get(column) is None:
            return TableResult("error", {}, f"a series without the labels {row!r}, {column!r}")
        number = _number(series.get("value"))
        if number.value is not None:
            cells = values.setdefault(str(labels[row]), {})
            key = str(labels[column])
            cells[key] = cells.get(key, 0.0) + number.value
    if not values:
        return TableResult("no_data", {}, "empty result (no matching series)")
    return TableResult("ok", values)


def parse_vector_response(status: int, text: str, by: str) -> VectorResult:
    """Turn an HTTP answer of `/api/v1/query` into label value -> number (pure)."""
    data = _success_data(status, text)
    if isinstance(data, QueryResult):
        return VectorResult(data.status, {}, data.message)
    if data.get("resultType") != "vector":
        return VectorResult("error", {}, f"result type {data.get('resultType')!r} is not a vector")
    values: dict[str, float] = {}
    for series in data.get("result") or []:
        label = (series.get("metric") or {}).get(by)
        number = _number(series.get("value"))
        if label is None:
            return VectorResult("error", {}, f"a series without the label {by!r}")
        if number.value is not None:
            values[str(label)] = values.get(str(label), 0.0) + number.value
    if not values:
        return VectorResult("no_data", {}, "empty result (no matching series)")
    return VectorResult("ok", values)


def parse_response(status: int, text: str) -> QueryResult:
    """Turn an HTTP answer of `/api/v1/query` into a QueryResult (pure, for tests)."""
    data = _success_data(status, text)
    if isinstance(data, QueryResult):
        return data
    result_type = data.get("resultType")
    result = data.get("result")
    if result_type == "scalar":
        return _number(result)
    if result_type == "vector":
        if not result:
            return QueryResult("no_data", None, "empty result (no matching series)")
        if len(result) > 1:
            return QueryResult(
                "error",
                None,
                f"{len(result)} series returned where one number was expected; aggregate "
                "with sum() or similar",
            )
        return _number(result[0].get("value"))
    return QueryResult("error", None, f"result type {result_type!r} is not a number")


def _number(sample: Any) -> QueryResult:
    try:
        value = float(sample[1])
    except (TypeError, ValueError, IndexError):
        return QueryResult("error", None, f"unreadable sample {sample!r}")
    if math.isinf(value):
        return QueryResult("ok", value)
    return QueryResult.of(value)
