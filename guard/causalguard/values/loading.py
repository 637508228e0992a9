"""Loading inventories: the project's YAML format, ValueBench CSV, and the shipped default."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from causalguard.errors import ConfigError, Problem
from causalguard.values.inventory import Dimension, Inventory, Item, UnknownDimensionError
from causalguard.yaml_files import validate_yaml_file

DEFAULT_INVENTORY = "schwartz-basic-10"
VALUEBENCH_COLUMNS = ("questionnaire", "item", "value", "agreement", "question")


def shipped_inventory_path(name: str) -> Path:
    return Path(str(resources.files("causalguard").joinpath("data", "inventories", f"{name}.yaml")))


def load_inventory(
    source: str | Path = DEFAULT_INVENTORY,
    *,
    dimensions: Sequence[str] | None = None,
    questionnaire: str | None = None,
) -> Inventory:
    """Load an inventory by shipped name, YAML path or ValueBench CSV path; optionally select dimensions.

    Dimension names in ``dimensions`` are matched after normalising to lowercase snake case, so
    'Self-Direction' selects ``self_direction``.
    """
    path = Path(source)
    if not path.exists() and str(source) == DEFAULT_INVENTORY:
        path = shipped_inventory_path(DEFAULT_INVENTORY)
    if not path.exists():
        raise ConfigError.single(
            str(source),
            "no such inventory file",
            hint=f"give a .yaml or ValueBench .csv path, or '{DEFAULT_INVENTORY}' for the default",
        )
    if path.suffix.lower() == ".csv":
        inventory = load_valuebench_csv(path, questionnaire=questionnaire)
    else:
        inventory = validate_yaml_file(Inventory, path)
    if dimensions:
        try:
            inventory = inventory.select([slug(d) for d in dimensions])
        except UnknownDimensionError as exc:
            raise ConfigError.single(str(path), str(exc), field="dimensions") from None
    return inventory


def slug(name: str) -> str:
    """'Self-Direction' -> 'self_direction'."""
    text = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")
    return text if text and text[0].isalpha() else f"v_{text}"


def load_valuebench_csv(path: Path, *, questionnaire: str | None = None) -> Inventory:
    """Read a ValueBench-format CSV (columns questionnaire,item,value,agreement,question).

    Each distinct ``value`` becomes a dimension (definition: the value's name, since ValueBench ships
    none); ``item`` is the statement, ``question`` its yes/no form, ``agreement`` the polarity.
    """
    problems: list[Problem] = []
    by_value: dict[str, list[Item]] = defaultdict(list)
    labels: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in VALUEBENCH_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError.single(
                str(path),
                f"missing column(s) {', '.join(missing)}",
                line=1,
                hint=f"a ValueBench CSV has the header {','.join(VALUEBENCH_COLUMNS)}",
            )
        for row in reader:
            line = reader.line_num
            if questionnaire and row["questionnaire"] != questionnaire:
                continue
            try:
                polarity = int(float(row["agreement"]))
            except ValueError:
                polarity = 0
            if polarity not in (1, -1):
                problems.append(
                    Problem(str(path), line, "agreement", f"must be 1 or -1, got {row['agreement']!r}")
                )
                continue
            if not row["question"].strip() or not row["item"].strip():
                problems.append(Problem(str(path), line, "item/question", "empty text"))
                continue
            name = slug(row["value"])
            labels.setdefault(name, row["value"].strip())
            item_id = f"{slug(row['questionnaire'])}_{name}_{len(by_value[name]) + 1:03d}"
            by_value[name].append(
                Item(id=item_id, statement=row["item"].strip(), question=row["question"].strip(),
                     polarity=1 if polarity == 1 else -1)
            )
    if problems:
        raise ConfigError(problems)
    if not by_value:
        hint = "check --questionnaire" if questionnaire else "the file has a header but no rows"
        raise ConfigError.single(str(path), "no items found", hint=hint)
    few = [name for name, items in by_value.items() if len(items) < 2]
    if few:
        raise ConfigError.single(
            str(path), f"dimension(s) with fewer than 2 items: {', '.join(few)}",
            hint="select dimensions with enough items (--dimensions)",
        )
    dims = [
        Dimension(name=name, label=labels[name], definition=labels[name].lower(), items=items)
        for name, items in by_value.items()
    ]
    title = questionnaire or path.stem
    return Inventory(name=f"valuebench-{slug(title)}", description=f"ValueBench CSV {path.name}",
                     dimensions=dims)
