"""The datasets file itself: YAML read with the safe loader, and its shape checked (top-level
key, dataset names, options and their value types) before any database is asked.

Invariant: what :func:`read_file` returns has only the documented options with values of the
documented types; anything else is a :class:`DatasetsError` naming the dataset and the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from shared.keys import ATTRIBUTE_NAME
from shared.pgtypes import OPERATORS

DATASET_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}", re.ASCII)
OPTIONS = ("table", "key", "columns", "exclude", "filters", "scope", "description", "key_unique")


class DatasetsError(ValueError):
    """The datasets file is unusable; the message names the file, the dataset and the field."""

    def __init__(self, message: str, dataset: str | None = None, field: str | None = None) -> None:
        where = "".join([f'dataset "{dataset}"' if dataset else "", f', field "{field}"' if dataset and field else ""])
        super().__init__(f"{where}: {message}" if where else message)
        self.dataset = dataset
        self.field = field


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (YAML keeps the last)."""


def _strict_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        try:
            repeated = key in seen
        except TypeError:  # an unhashable key: construct_mapping reports it as a YAML error
            break
        if repeated:
            raise DatasetsError(f"{key!r} is written twice (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)


def read_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """The datasets of the file, shape-checked (names, options, value types); no database.

    Raises:
        DatasetsError: the file is missing, not YAML, or not the documented shape.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetsError(f"cannot read the datasets file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise DatasetsError(f"not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})") from None
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise DatasetsError(f"not valid YAML: {exc}") from None
    if not isinstance(document, dict) or set(document) != {"datasets"}:
        raise DatasetsError("the file must hold one top-level key, 'datasets', mapping names to datasets")
    datasets = document["datasets"]
    if not isinstance(datasets, dict) or not datasets:
        raise DatasetsError("'datasets' must map at least one dataset name to its options")
    for name, entry in datasets.items():
        if not isinstance(name, str) or not DATASET_NAME.fullmatch(name):
            raise DatasetsError(
                f"dataset name {name!r} must be lower-case letters, digits and _, starting with a letter"
            )
        _check_shape(name, entry)
    return datasets


def _names(dataset: str, field: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise DatasetsError("must be a list of column names", dataset, field)
    duplicates = sorted({v for v in value if value.count(v) > 1})
    if duplicates:
        raise DatasetsError(f"{duplicates[0]!r} is listed twice", dataset, field)
    return value


def _check_shape(name: str, entry: Any) -> None:
    if not isinstance(entry, dict):
        raise DatasetsError("must be a mapping of options", name)
    unknown = sorted(str(k) for k in set(entry) - set(OPTIONS))
    if unknown:
        raise DatasetsError(f"unknown option (allowed: {', '.join(OPTIONS)})", name, unknown[0])
    for required in ("table", "key"):
        if not isinstance(entry.get(required), str) or not entry[required]:
            raise DatasetsError("is required (a name)", name, required)
    columns = entry.get("columns", "*")
    if columns != "*":
        _names(name, "columns", columns)
    _names(name, "exclude", entry.get("exclude", []))
    filters = entry.get("filters")
    if filters is not None:
        if not isinstance(filters, dict):
            raise DatasetsError("must map column names to lists of operators", name, "filters")
        for column, ops in filters.items():
            if not isinstance(ops, list) or not all(isinstance(op, str) for op in ops):
                raise DatasetsError(f"must be a list of operators ({', '.join(OPERATORS)})", name, f"filters.{column}")
    scope = entry.get("scope")
    if scope is not None:
        if not isinstance(scope, dict) or not scope:
            raise DatasetsError("must map columns to key attribute names", name, "scope")
        for column, attribute in scope.items():
            if not isinstance(attribute, str) or not ATTRIBUTE_NAME.fullmatch(attribute):
                raise DatasetsError(f"{attribute!r} is not an attribute name", name, f"scope.{column}")
    if not isinstance(entry.get("description", ""), str):
        raise DatasetsError("must be a string", name, "description")
    if not isinstance(entry.get("key_unique", False), bool):
        raise DatasetsError("must be true or false", name, "key_unique")
