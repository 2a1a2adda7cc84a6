from __future__ import annotations

import pytest

from kiln.cli.main import build_parser
from kiln.cli.schema import schema_lines

pytestmark = pytest.mark.unit


def test_schema_shows_every_column_with_type_missing_categories_and_preparation() -> None:
    mv = {
        "spec": {
            "inputSchema": {
                "features": [
                    {
                        "name": "island",
                        "type": "categorical",
                        "dtype": "str",
                        "nullable": False,
                        "categories": ["Biscoe", "Dream", "Torgersen"],
                        "impute": "most_frequent",
                        "encoder": "onehot",
                    },
                    {
                        "name": "body_mass_g",
                        "type": "numeric",
                        "dtype": "float64",
                        "nullable": True,
                        "impute": "constant",
                        "fillValue": "0",
                        "scaling": "standard",
                    },
                    {"name": "legacy"},
                ],
                "dropped": ["name"],
                "target": {"name": "species", "dtype": "str"},
                "classes": ["Adelie", "Gentoo"],
            }
        }
    }
    lines = schema_lines(mv)
    assert lines[0].split() == ["COLUMN", "TYPE", "DTYPE", "MISSING", "CATEGORIES", "PREPARATION"]
    assert lines[1].split() == [
        "island",
        "categorical",
        "str",
        "no",
        "Biscoe,Dream,Torgersen",
        "impute=most_frequent,encoder=onehot",
    ]
    assert lines[2].split() == [
        "body_mass_g",
        "numeric",
        "float64",
        "yes",
        "-",
        "impute=constant(0),scaling=standard",
    ]
    assert lines[3].split() == ["legacy", "-", "-", "-", "-", "-"]
    assert lines[4:] == ["dropped: name", "target: species (str)", "classes: Adelie, Gentoo"]


def test_long_category_lists_are_cut_with_the_count() -> None:
    feature = {"name": "c", "type": "categorical", "categories": [f"k{i}" for i in range(256)],
               "categoriesCount": 300}  # fmt: skip
    (_, row) = schema_lines({"spec": {"inputSchema": {"features": [feature]}}})
    assert "k0,k1,k2,k3,k4,k5,k6,k7,… (+292)" in row


def test_a_version_without_a_schema_says_so() -> None:
    assert schema_lines({"spec": {}})[-1] == "(no input schema recorded)"


def test_schema_is_a_subcommand() -> None:
    args = build_parser().parse_args(["schema", "penguins-v1", "-n", "ml", "-o", "json"])
    assert (args.name, args.namespace, args.output) == ("penguins-v1", "ml", "json")
