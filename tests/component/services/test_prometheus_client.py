"""The async PromQL client against a local HTTP server, and against nothing at all."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from tests.support.ports import free_port

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
