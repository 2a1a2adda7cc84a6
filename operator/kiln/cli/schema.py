"""`kiln schema <modelversion>`: the inputs a ModelVersion takes, as the trainer inferred them.

Every raw column with its type, whether training saw it missing, its categories and how
it is prepared; then the dropped columns, the target and the classes. Also reachable as
`kubectl kiln schema iris-v3`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from kiln.cli.versions import GROUP, PLURAL, VERSION, CliError, _api, _namespace, add_common

MAX_CATEGORIES_SHOWN = 8


def _preparation(feature: Mapping[str, Any]) -> str:
    steps = []
    impute = feature.get("impute")
    if impute:
        fill = feature.get("fillValue")
        steps.append(f"impute={impute}" + (f"({fill})" if fill is not None else ""))
    for key in ("encoder", "scaling"):
        if feature.get(key):
            steps.append(f"{key}={feature[key]}")
    if feature.get("dateParts"):
        steps.append("parts=" + "+".join(feature["dateParts"]))
    return ",".join(steps) or "-"


def _categories(feature: Mapping[str, Any]) -> str:
    categories = feature.get("categories")
    if categories is None:
        count = feature.get("categoriesCount")
        return f"({count} categories)" if count is not None else "-"
    total = feature.get("categoriesCount") or len(categories)
    shown = ",".join(str(c) for c in categories[:MAX_CATEGORIES_SHOWN])
    more = total - min(len(categories), MAX_CATEGORIES_SHOWN)
    return shown + (f",… (+{more})" if more > 0 else "")


def schema_lines(model_version: Mapping[str, Any]) -> list[str]:
    """The table `kiln schema` prints (pure: a ModelVersion object in, lines out)."""
    spec = model_version.get("spec") or {}
    schema = spec.get("inputSchema") or {}
    features = schema.get("features") or []
    rows = [["COLUMN", "TYPE", "DTYPE", "MISSING", "CATEGORIES", "PREPARATION"]]
    for feature in features:
        nullable = feature.get("nullable")
        rows.append(
            [
                str(feature.get("name", "")),
                str(feature.get("type") or "-"),
                str(feature.get("dtype") or "-"),
                "-" if nullable is None else ("yes" if nullable else "no"),
                _categories(feature),
                _preparation(feature),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    if not features:
        lines.append("(no input schema recorded)")
    if schema.get("dropped"):
        lines.append("dropped: " + ", ".join(schema["dropped"]))
    target = schema.get("target") or {}
    if target.get("name"):
        lines.append(f"target: {target['name']} ({target.get('dtype', '?')})")
    if schema.get("classes") is not None:
        lines.append("classes: " + ", ".join(str(c) for c in schema["classes"]))
    return lines


def schema(args: argparse.Namespace) -> int:
    from kubernetes import client

    custom: Any = client.CustomObjectsApi(_api(args))
    try:
        item = custom.get_namespaced_custom_object(
            GROUP, VERSION, _namespace(args), PLURAL, args.name
        )
    except client.ApiException as e:
        raise CliError(f"cannot read modelversion {args.name}: {e.reason}") from e
    if args.output == "json":
        print(json.dumps((item.get("spec") or {}).get("inputSchema") or {}, indent=2))
        return 0
    print("\n".join(schema_lines(item)))
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "schema", help="the input columns of a ModelVersion: types, missing values, categories"
    )
    parser.add_argument("name", help="ModelVersion name, e.g. penguins-v1")
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table")
    add_common(parser)
    parser.set_defaults(func=schema)
