"""Loading inventories: the project's YAML format, ValueBench CSV, and the shipped default."""

from __future__ import annotations

import csv
import io
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from causalguard.errors import ConfigError, Problem
from causalguard.values.inventory import (
    MAX_ITEM_CHARS,
    RESERVED_NAMES,
    Dimension,
    Inventory,
    Item,
    UnknownDimensionError,
)
from causalguard.yaml_files import validate_yaml_file

DEFAULT_INVENTORY = "schwartz-basic-10"
VALUEBENCH_COLUMNS = ("questionnaire", "item", "value", "agreement", "question")
MAX_CSV_FIELD = 131072  # the csv module's own limit; a longer field is an error with its line


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
    none); ``item`` is the statement, ``question`` its yes/no form, ``agreement`` the polarity (exactly
    1 or -1). Every row is checked and every problem names its line: rows with missing or extra
    fields, texts under 3 or over ``MAX_ITEM_CHARS`` characters, a repeated item, and two spellings
    of a value that would merge into one name ('Power' and 'POWER!'). UTF-8 with or without a
    byte-order mark.
    """
    text = _read_csv_text(path)
    problems: list[Problem] = []
    by_value: dict[str, list[Item]] = defaultdict(list)
    labels: dict[str, tuple[str, int]] = {}  # dimension name -> (the value as written, its first line)
    seen_items: dict[tuple[str, str], int] = {}
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
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
            if None in row.values() or None in row:
                count = len([v for k, v in row.items() if k is not None and v is not None]) + len(row.get(None) or [])
                problems.append(
                    Problem(
                        str(path),
                        line,
                        "row",
                        f"has {count} fields, the header has {len(reader.fieldnames or [])}",
                        hint="quote fields that contain commas",
                    )
                )
                continue
            if questionnaire and row["questionnaire"] != questionnaire:
                continue
            item = _valuebench_item(path, line, row, problems)
            if item is None:
                continue
            name = slug(row["value"])
            written = row["value"].strip()
            if name in labels and labels[name][0] != written:
                problems.append(
                    Problem(
                        str(path),
                        line,
                        "value",
                        f"'{written}' and '{labels[name][0]}' (line {labels[name][1]}) both become "
                        f"the value name '{name}'",
                        hint="spell one value one way",
                    )
                )
                continue
            labels.setdefault(name, (written, line))
            key = (name, item.statement)
            if key in seen_items:
                problems.append(
                    Problem(
                        str(path),
                        line,
                        "item",
                        f"repeats line {seen_items[key]} (same value and statement)",
                        hint="delete the duplicate row",
                    )
                )
                continue
            seen_items[key] = line
            item_id = f"{slug(row['questionnaire'])}_{name}_{len(by_value[name]) + 1:03d}"
            by_value[name].append(item.model_copy(update={"id": item_id}))
    except csv.Error as exc:
        raise ConfigError.single(
            str(path),
            f"unreadable CSV: {exc}",
            line=reader.line_num + 1,
            hint=f"fields are at most {MAX_CSV_FIELD} characters; check the quoting",
        ) from None
    for name, (written, line) in labels.items():
        if name in RESERVED_NAMES:
            problems.append(
                Problem(
                    str(path),
                    line,
                    "value",
                    f"'{written}' is a column name of the score matrix",
                    hint=f"rename the value (e.g. '{name}_value')",
                )
            )
    if problems:
        raise ConfigError(problems)
    if not by_value:
        hint = "check --questionnaire" if questionnaire else "the file has a header but no rows"
        raise ConfigError.single(str(path), "no items found", hint=hint)
    few = [name for name, items in by_value.items() if len(items) < 2]
    if few:
        raise ConfigError.single(
            str(path),
            f"dimension(s) with fewer than 2 items: {', '.join(few)}",
            hint="select dimensions with enough items (--dimensions)",
        )
    dims = [
        Dimension(name=name, label=labels[name][0], definition=labels[name][0].lower(), items=items)
        for name, items in by_value.items()
    ]
    title = questionnaire or path.stem
    return Inventory(name=f"valuebench-{slug(title)}", description=f"ValueBench CSV {path.name}", dimensions=dims)


def _read_csv_text(path: Path) -> str:
    """The file as text: UTF-8, a byte-order mark dropped; other encodings are an error naming the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError.single(
            str(path),
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            line=line,
            hint="save the file as UTF-8 (it may be Latin-1 or Windows-1252)",
        ) from None


def _valuebench_item(path: Path, line: int, row: dict[str, str], problems: list[Problem]) -> Item | None:
    """One row's item, or ``None`` with its problems recorded."""
    found = []
    try:
        agreement = float(row["agreement"])
    except ValueError:
        agreement = math.nan
    if agreement not in (1.0, -1.0):
        found.append(
            Problem(
                str(path),
                line,
                "agreement",
                f"must be 1 or -1, got {row['agreement']!r}",
                hint="1: agreeing expresses the value; -1: agreeing expresses its opposite",
            )
        )
    for column in ("item", "question"):
        size = len(row[column].strip())
        if size < 3 or size > MAX_ITEM_CHARS:
            found.append(
                Problem(
                    str(path),
                    line,
                    column,
                    f"{size} characters; an item is 3 to {MAX_ITEM_CHARS}",
                    hint="one questionnaire sentence per field",
                )
            )
    if found:
        problems.extend(found)
        return None
    return Item(
        id="pending",
        statement=row["item"].strip(),
        question=row["question"].strip(),
        polarity=1 if agreement == 1.0 else -1,
    )
