from pathlib import Path

import pytest

from causalguard import ConfigError, load_inventory
from causalguard.values.inventory import UnknownDimensionError


def test_default_inventory_is_schwartz_ten_with_balanced_keys() -> None:
    inv = load_inventory()
    assert inv.names == [
        "self_direction",
        "stimulation",
        "hedonism",
        "achievement",
        "power",
        "security",
        "conformity",
        "tradition",
        "benevolence",
        "universalism",
    ]
    for dim in inv.dimensions:
        assert len(dim.items) >= 12
        assert sum(1 for i in dim.items if i.polarity == -1) == len(dim.items) // 2
        assert all(i.question.endswith("?") for i in dim.items)
    assert len(inv.content_hash()) == 64


def test_select_keeps_order_and_suggests_close_names() -> None:
    inv = load_inventory()
    assert inv.select(["power", "benevolence"]).names == ["power", "benevolence"]
    with pytest.raises(UnknownDimensionError, match="did you mean 'benevolence'"):
        inv.dimension("benevolense")
    with pytest.raises(ConfigError, match="did you mean 'power'"):
        load_inventory(dimensions=["powr"])


def test_dimension_names_from_the_cli_are_normalised() -> None:
    assert load_inventory(dimensions=["Self-Direction"]).names == ["self_direction"]


BAD_YAML = """\
name: bad
dimensions:
  - name: kindness
    definition: being kind
    items:
      - id: k1
        statement: I am kind.
        question: Are you kind?
        polarity: 2
      - id: k2
        statment: I am mean.
        question: Are you mean?
        polarity: -1
"""


def test_yaml_errors_name_file_line_field_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(BAD_YAML)
    with pytest.raises(ConfigError) as info:
        load_inventory(path)
    text = str(info.value)
    assert f"{path}:9: dimensions[0].items[0].polarity" in text
    assert f"{path}:11: dimensions[0].items[1].statment: unknown field" in text
    assert "did you mean 'statement'?" in text
    assert "dimensions[0].items[1].statement: required field is missing" in text


def test_duplicate_item_ids_and_bad_yaml_syntax(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(
        BAD_YAML.replace("polarity: 2", "polarity: 1").replace("statment", "statement").replace("id: k2", "id: k1")
    )
    with pytest.raises(ConfigError, match="item id 'k1' is used twice"):
        load_inventory(path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"inv.yaml:\d+: invalid YAML"):
        load_inventory(path)


VALUEBENCH = """\
questionnaire,item,value,agreement,question
PVQ,I like to help.,Benevolence,1,Do you like to help?
PVQ,I ignore others.,Benevolence,-1,Do you ignore others?
PVQ,I want power.,Power,1,Do you want power?
PVQ,I avoid leading.,Power,-1,Do you avoid leading?
OTHER,I like rules.,Conformity,1,Do you like rules?
OTHER,I break rules.,Conformity,-1,Do you break rules?
"""


def test_valuebench_csv_with_questionnaire_and_dimension_selection(tmp_path: Path) -> None:
    path = tmp_path / "vb.csv"
    path.write_text(VALUEBENCH)
    inv = load_inventory(path, questionnaire="PVQ")
    assert inv.names == ["benevolence", "power"]
    assert [i.polarity for i in inv.dimension("power").items] == [1, -1]
    assert inv.dimension("benevolence").items[1].question == "Do you ignore others?"
    assert load_inventory(path, dimensions=["Conformity"]).names == ["conformity"]


def test_valuebench_csv_errors_point_at_lines(tmp_path: Path) -> None:
    path = tmp_path / "vb.csv"
    path.write_text(VALUEBENCH.replace("Power,-1", "Power,maybe"))
    with pytest.raises(ConfigError, match=r"vb\.csv:5: agreement: must be 1 or -1"):
        load_inventory(path)
    path.write_text("item,value\nx,y\n")
    with pytest.raises(ConfigError, match="missing column"):
        load_inventory(path)
    with pytest.raises(ConfigError, match="no such inventory"):
        load_inventory(tmp_path / "nope.yaml")
