from __future__ import annotations

import json

import pytest

from kilndev import dashboards

pytestmark = pytest.mark.unit


def test_every_shipped_panel_query_has_its_variables_filled() -> None:
    queries = [
        q
        for path in sorted(dashboards.DASHBOARDS.glob("*.json"))
        for q in dashboards.panel_queries(json.loads(path.read_text()), path.stem, "kiln-demo")
    ]
    assert {q.dashboard for q in queries} >= {"kiln-canary", "kiln-operator", "kiln-training"}
    assert all("$" not in q.expr for q in queries), [q.expr for q in queries if "$" in q.expr]


def test_panels_without_an_expression_are_skipped() -> None:
    board = {
        "panels": [{"title": "text"}, {"title": "p", "targets": [{"expr": "up[$__rate_interval]"}]}]
    }
    (query,) = dashboards.panel_queries(board, "b", "ns")
    assert query.expr == "up[1m]" and query.panel == "p"
