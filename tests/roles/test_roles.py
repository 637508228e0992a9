import json
from pathlib import Path

import pytest

from causalguard import ConfigError, generate_personas, load_inventory, load_roles_file, value_roles
from causalguard.graphs.survey.conditions import build_conditions, standard_roles
from causalguard.roles import load_anchor_roles


def test_personas_are_seeded_distinct_and_complete() -> None:
    first = generate_personas(20, seed=3)
    again = generate_personas(20, seed=3)
    other = generate_personas(20, seed=4)
    assert first == again
    assert first != other
    assert len({p.system_prompt for p in first}) == 20
    for persona in first:
        assert persona.kind == "persona"
        for field in ("Name:", "Gender:", "Job:", "MBTI:", "Bio:"):
            assert field in (persona.system_prompt or "")
        assert persona.description.endswith(",")


def test_value_roles_cover_every_dimension_both_ways() -> None:
    inv = load_inventory()
    roles = value_roles(inv)
    assert len(roles) == 2 * len(inv.names)
    inclined = next(r for r in roles if r.id == "value:tradition:inclined")
    assert inclined.target == "tradition" and inclined.direction == 1
    assert "strongly inclined to the value of Tradition" in (inclined.system_prompt or "")
    assert dict(inclined.expected) == {"tradition": 1}
    disinclined = next(r for r in roles if r.id == "value:tradition:disinclined")
    assert "rejection of inherited customs" in (disinclined.system_prompt or "")


def test_roles_file_yaml_and_jsonl(tmp_path: Path) -> None:
    inv = load_inventory()
    yaml_path = tmp_path / "roles.yaml"
    yaml_path.write_text(
        "roles:\n  - id: judge\n    description: a retired judge who loves order,\n    expected: {conformity: up}\n"
    )
    [judge] = load_roles_file(yaml_path, inv)
    assert judge.expected["conformity"] == 1 and "retired judge" in (judge.system_prompt or "")
    jsonl = tmp_path / "roles.jsonl"
    jsonl.write_text(
        json.dumps({"id": "a", "description": "a poet"})
        + "\n\n"
        + json.dumps({"id": "b", "description": "a miner", "system_prompt": "You dig."})
        + "\n"
    )
    roles = load_roles_file(jsonl, inv)
    assert [r.id for r in roles] == ["a", "b"] and roles[1].system_prompt == "You dig."


def test_roles_file_errors_are_located(tmp_path: Path) -> None:
    inv = load_inventory()
    path = tmp_path / "roles.yaml"
    path.write_text("roles:\n  - id: x\n    description: a person\n    expected: {tradtion: up}\n")
    with pytest.raises(ConfigError, match="did you mean 'tradition'"):
        load_roles_file(path, inv)
    path.write_text("roles:\n  - id: x\n    description: a person\n    expected: {tradition: sideways}\n")
    with pytest.raises(ConfigError, match=r"roles\.yaml:4: roles\[0\]\.expected\.tradition"):
        load_roles_file(path, inv)
    jsonl = tmp_path / "roles.jsonl"
    jsonl.write_text('{"id": "ok", "description": "a cook"}\n{not json\n')
    with pytest.raises(ConfigError, match=r"roles\.jsonl:2: invalid JSON"):
        load_roles_file(jsonl, inv)


def test_anchor_roles_keep_only_known_dimensions() -> None:
    inv = load_inventory(dimensions=["power", "benevolence"])
    anchors = load_anchor_roles(inv)
    assert anchors, "the shipped anchors include power and benevolence expectations"
    assert all(set(a.expected) <= {"power", "benevolence"} for a in anchors)


def test_standard_conditions() -> None:
    inv = load_inventory()
    roles = standard_roles(inv, personas=30)
    conditions = build_conditions(roles)
    assert len(conditions) == 1 + 30 + 20 + len(load_anchor_roles(inv))
    assert conditions[0].id == "baseline"
    with pytest.raises(ValueError, match="duplicate"):
        build_conditions(roles + roles[:1])


def test_roles_jsonl_shares_the_strict_reader(tmp_path: Path) -> None:
    path = tmp_path / "roles.jsonl"
    path.write_bytes('{"id": "caf\u00e9", "description": "a caf\u00e9 owner"}\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_roles_file(path)
    path.write_text("\n\n")
    with pytest.raises(ConfigError, match="no roles in the file"):
        load_roles_file(path)
