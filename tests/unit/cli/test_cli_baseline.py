from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kiln.cli.baseline import baseline_lines, bin_names, fetch_baseline
from kiln.cli.main import build_parser
from kiln.cli.versions import CliError
from kiln.contract.monitoring import OTHER_BIN, Baseline, Distribution, FeatureProfile

pytestmark = pytest.mark.unit

BASELINE = Baseline(
    rows=200,
    task="classification",
    features=[
        FeatureProfile(
            name="petal_length",
            kind="numeric",
            missing_rate=0.025,
            distribution=Distribution(edges=[1.5, 4.35], shares=[0.25, 0.25, 0.5], count=195),
        ),
        FeatureProfile(
            name="colour",
            kind="categorical",
            distribution=Distribution(
                labels=["red", "blue", OTHER_BIN], shares=[0.6, 0.3, 0.1], count=200
            ),
        ),
        FeatureProfile(name="joined", kind="datetime", distribution=Distribution()),
    ],
    predictions=Distribution(labels=["setosa", "virginica"], shares=[0.4, 0.6], count=50),
    labels=Distribution(labels=["setosa", "virginica"], shares=[0.5, 0.5], count=50),
)


def test_summary_shows_kind_missing_bins_and_shares() -> None:
    lines = baseline_lines(BASELINE)
    assert lines[0] == "task: classification   training rows profiled: 200"
    assert lines[1] == "petal_length  numeric  missing 2.5%  3 bins  195 values"
    assert lines[2] == "    < 1.5        █████···············  25.0%"
    assert lines[3].startswith("    [1.5, 4.35)  █████") and lines[3].endswith(" 25.0%")
    assert lines[4].startswith("    >= 4.35      ██████████··········") and "50.0%" in lines[4]
    assert lines[5].startswith("colour  categorical  missing 0.0%")
    assert lines[6].startswith("    red      ████████████") and lines[6].endswith(" 60.0%")
    assert lines[8].startswith("    (other)") and lines[8].endswith(" 10.0%")
    assert lines[10] == "    (not binned)"
    assert lines[11] == "predictions (held-out split)  50 values"
    assert lines[12].startswith("    setosa     ████████") and lines[12].endswith(" 40.0%")
    assert lines[14] == "labels (held-out split)  50 values"


def test_bin_names_for_numeric_and_constant_columns() -> None:
    assert bin_names(Distribution(edges=[], shares=[1.0], count=3)) == ["(all)"]
    assert bin_names(Distribution(edges=[0.000123456], shares=[0.5, 0.5])) == [
        "< 0.0001235",
        ">= 0.0001235",
    ]


def test_many_bins_are_summarised() -> None:
    shares = [1 / 20] * 20
    dist = Distribution(edges=[float(i) for i in range(1, 20)], shares=shares, count=20)
    lines = baseline_lines(
        Baseline(rows=20, features=[FeatureProfile(name="x", kind="numeric", distribution=dist)])
    )
    assert lines[-1] == "    … 8 more bins, 40.0% together"


def test_fetch_verifies_the_recorded_digest(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    data = BASELINE.model_dump_json(by_alias=True).encode()
    path.write_bytes(data)
    item = {
        "metadata": {"name": "iris-v3"},
        "spec": {"baseline": {"uri": path.as_uri(), "sha256": hashlib.sha256(data).hexdigest()}},
    }
    assert fetch_baseline(item) == BASELINE
    path.write_bytes(data.replace(b"0.6", b"0.7"))
    with pytest.raises(CliError, match="failed verification"):
        fetch_baseline(item)
    with pytest.raises(CliError, match="has no baseline"):
        fetch_baseline({"metadata": {"name": "old-v1"}, "spec": {}})


def test_the_command_is_registered() -> None:
    args = build_parser().parse_args(["baseline", "iris-v3", "-n", "ml"])
    assert (args.name, args.namespace, args.output) == ("iris-v3", "ml", "table")
