"""`kiln baseline <modelversion>`: the training profile drift is measured against.

Reads the ModelVersion's `spec.baseline`, fetches `baseline.json` from the object store
with the credentials of this shell (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_ENDPOINT_URL` or `KILN_S3_ENDPOINT`, else boto3's chain), verifies its sha256
against the one recorded in the ModelVersion, and prints per feature its type, missing
rate and bins with their training shares as bars; then the held-out predictions and
labels. Also reachable as `kubectl kiln baseline iris-v3`.
"""

from __future__ import annotations

import argparse
import itertools
import json
from typing import Any

from kiln.cli.versions import GROUP, PLURAL, VERSION, CliError, _api, _namespace, add_common
from kiln.contract.monitoring import OTHER_BIN, Baseline, Distribution

BAR_WIDTH = 20
MAX_BINS_SHOWN = 12


def _number(value: float) -> str:
    return f"{value:.4g}"


def bin_names(distribution: Distribution) -> list[str]:
    """A readable name per bin: the numeric range, or the label (OTHER_BIN as "(other)")."""
    if distribution.labels is not None:
        return ["(other)" if label == OTHER_BIN else label for label in distribution.labels]
    edges = distribution.edges or []
    if not edges:
        return ["(all)"] * len(distribution.shares)
    names = [f"< {_number(edges[0])}"]
    names += [f"[{_number(a)}, {_number(b)})" for a, b in itertools.pairwise(edges)]
    names.append(f">= {_number(edges[-1])}")
    return names


def _bar(share: float, width: int = BAR_WIDTH) -> str:
    filled = round(max(0.0, min(1.0, share)) * width)
    return "█" * filled + "·" * (width - filled)


def distribution_lines(distribution: Distribution, indent: str = "    ") -> list[str]:
    names = bin_names(distribution)
    if not distribution.shares:
        return [f"{indent}(not binned)"]
    width = max(len(n) for n in names[:MAX_BINS_SHOWN])
    lines = [
        f"{indent}{name.ljust(width)}  {_bar(share)} {share * 100:5.1f}%"
        for name, share in list(zip(names, distribution.shares, strict=False))[:MAX_BINS_SHOWN]
    ]
    hidden = len(distribution.shares) - MAX_BINS_SHOWN
    if hidden > 0:
        rest = sum(distribution.shares[MAX_BINS_SHOWN:])
        lines.append(f"{indent}… {hidden} more bins, {rest * 100:.1f}% together")
    return lines


def baseline_lines(baseline: Baseline) -> list[str]:
    """The summary `kiln baseline` prints (pure: a Baseline in, lines out)."""
    lines = [f"task: {baseline.task}   training rows profiled: {baseline.rows}"]
    if not baseline.features:
        lines.append("(no features profiled)")
    for feature in baseline.features:
        dist = feature.distribution
        lines.append(
            f"{feature.name}  {feature.kind}  missing {feature.missing_rate * 100:.1f}%  "
            f"{len(dist.shares)} bins  {dist.count} values"
        )
        lines.extend(distribution_lines(dist))
    for title, held_out in (
        ("predictions (held-out split)", baseline.predictions),
        ("labels (held-out split)", baseline.labels),
    ):
        if held_out is not None:
            lines.append(f"{title}  {held_out.count} values")
            lines.extend(distribution_lines(held_out))
    return lines


def fetch_baseline(item: dict[str, Any]) -> Baseline:
    """The verified baseline of a ModelVersion object."""
    from kiln.api.model_version import BaselineReference
    from kiln.store import IntegrityError, ObjectStore, StoreError
    from kiln.store.baseline import read_baseline

    name = (item.get("metadata") or {}).get("name", "?")
    recorded = (item.get("spec") or {}).get("baseline")
    if not recorded:
        raise CliError(f"modelversion {name} has no baseline (trained before baselines)")
    reference = BaselineReference.model_validate(recorded)
    try:
        return read_baseline(ObjectStore(), reference)
    except IntegrityError as e:
        raise CliError(f"baseline of {name} failed verification: {e}") from e
    except StoreError as e:
        raise CliError(f"cannot read the baseline of {name}: {e}") from e


def baseline(args: argparse.Namespace) -> int:
    from kubernetes import client

    custom: Any = client.CustomObjectsApi(_api(args))
    try:
        item = custom.get_namespaced_custom_object(
            GROUP, VERSION, _namespace(args), PLURAL, args.name
        )
    except client.ApiException as e:
        raise CliError(f"cannot read modelversion {args.name}: {e.reason}") from e
    profile = fetch_baseline(item)
    if args.output == "json":
        print(json.dumps(profile.model_dump(mode="json", by_alias=True), indent=2))
        return 0
    print("\n".join(baseline_lines(profile)))
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "baseline",
        help="the training baseline of a ModelVersion: per feature its bins and shares",
    )
    parser.add_argument("name", help="ModelVersion name, e.g. iris-v3")
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table")
    add_common(parser)
    parser.set_defaults(func=baseline)
