"""The async PromQL client against a local HTTP server, and against nothing at all."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from tests.support.ports import free_port

from kiln.core.analysis import VectorQuery
from kiln.services.prometheus import PrometheusClient

pytestmark = pytest.mark.component


async def test_answers_no_data_and_unreachable_are_kept_apart() -> None:
    async def query(request: web.Request) -> web.Response:
        promql = (await request.post())["query"]
        result = [] if promql == "empty" else [{"metric": {}, "value": [0, "0.5"]}]
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    app = web.Application()
    app.router.add_post("/api/v1/query", query)
    async with TestServer(app, host="127.0.0.1") as server:
        prometheus = PrometheusClient(str(server.make_url("/")))
        answers = await prometheus.query_many({"a": "up", "b": "empty"})
        await prometheus.close()
    assert answers["a"].status == "ok" and answers["a"].value == 0.5
    assert answers["b"].status == "no_data"

    async with PrometheusClient(f"http://127.0.0.1:{free_port()}", timeout=2) as prometheus:
        down = await prometheus.query("up")
    assert down.status == "unreachable"
    assert "127.0.0.1" in down.message


async def test_vector_queries_are_run_together_and_read_by_their_label() -> None:
    async def query(request: web.Request) -> web.Response:
        promql = str((await request.post())["query"])
        result = (
            []
            if promql == "empty"
            else [
                {"metric": {"class": "a"}, "value": [0, "3"]},
                {"metric": {"class": "b"}, "value": [0, "1"]},
            ]
        )
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    app = web.Application()
    app.router.add_post("/api/v1/query", query)
    async with TestServer(app, host="127.0.0.1") as server:
        prometheus = PrometheusClient(str(server.make_url("/")))
        answers = await prometheus.query_vectors(
            {"x": VectorQuery("classes", "class"), "y": VectorQuery("empty", "class")}
        )
        await prometheus.close()
    assert answers["x"].status == "ok" and dict(answers["x"].values) == {"a": 3.0, "b": 1.0}
    assert answers["y"].status == "no_data"
    async with PrometheusClient(f"http://127.0.0.1:{free_port()}", timeout=2) as prometheus:
        down = await prometheus.query_vectors({"z": VectorQuery("up", "job")})
    assert down["z"].status == "unreachable"
