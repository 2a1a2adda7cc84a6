"""Run every shipped Grafana panel's PromQL against a Prometheus and count the series.

`python -m kilndev.dashboards <prometheus-url> [--namespace NS]` prints one line per query
and exits 1 when any query returns no series (or fails), so the demo shows which dashboard
would be blank instead of claiming the dashboards work.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DASHBOARDS = Path(__file__).resolve().parents[2] / "manifests" / "monitoring" / "dashboards"


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    expr: str


def panel_queries(dashboard: dict, name: str, namespace: str) -> list[PanelQuery]:
    """Every target's expression with Grafana's variables filled in as a viewer would."""
    values = {
        "$namespace": namespace,
        "$deployment": ".*",
        "$__rate_interval": "1m",
        "$__interval": "30s",
    }
    found = []
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if not expr:
                continue
            for variable, value in values.items():
                expr = expr.replace(variable, value)
            found.append(PanelQuery(name, str(panel.get("title", "")), expr))
    return found


def series_count(prometheus: str, expr: str) -> int:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(body.get("error", body))
    return len(body["data"]["result"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("prometheus")
    parser.add_argument("--namespace", default=".*")
    args = parser.parse_args(argv)
    empty = 0
    for path in sorted(DASHBOARDS.glob("*.json")):
        for query in panel_queries(json.loads(path.read_text()), path.stem, args.namespace):
            try:
                count = series_count(args.prometheus, query.expr)
            except (OSError, RuntimeError) as e:
                print(f"  FAILED  {query.dashboard} / {query.panel}: {e}")
                empty += 1
                continue
            empty += count == 0
            mark = "ok    " if count else "EMPTY "
            print(f"  {mark}{count:3d} series  {query.dashboard} / {query.panel}")
    return 1 if empty else 0


if __name__ == "__main__":
    sys.exit(main())
