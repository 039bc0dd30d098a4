"""Reading a job file (YAML, or JSON when its name ends in ``.json``) that a user hands the
client or the ``nas`` command line: the one place such files are parsed.

``yaml.safe_load`` refuses Python objects but not aliases (a "billion laughs" file of a few
hundred bytes expands to gigabytes) nor deep nesting (its composer recurses until a
``RecursionError``); ``json.loads`` recurses too. Job files are a few KB, a few levels deep,
and never need aliases, so this module refuses aliases and bounds size and depth, and every
refusal is a ``ConfigFileError`` that names the file and the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

#: Job files are a few KB; this leaves room for long device lists and comments.
MAX_BYTES = 1024 * 1024
#: Levels of nested mappings and lists; a job spec needs about five.
MAX_DEPTH = 64


class ConfigFileError(ValueError):
    """A job file that cannot be read, does not parse, or is refused; the message names it."""


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses aliases and nesting deeper than ``MAX_DEPTH``, before either
    can cost memory or recursion (the composer builds the node graph that aliases share)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def fetch_flow_collection_start(self, token_class: type) -> None:
        # The scanner looks up to 1024 characters ahead for a key at every open flow
        # bracket (quadratic in the brackets): refuse deep flow nesting already here.
        if self.flow_level >= MAX_DEPTH:
            raise ConfigFileError(f"nested deeper than {MAX_DEPTH} levels (line {self.line + 1})")
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        event = self.peek_event()
        where = f"line {event.start_mark.line + 1}"
        if isinstance(event, yaml.AliasEvent):
            raise ConfigFileError(
                f"YAML aliases are not accepted ({where}: *{event.anchor}); write the value out"
            )
        nests = isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent)
        self._depth += nests
        if self._depth > MAX_DEPTH:
            raise ConfigFileError(f"nested deeper than {MAX_DEPTH} levels ({where})")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= nests


def _yaml(text: str) -> Any:
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _depth(value: Any) -> int:
    """Levels of nested dicts and lists, without recursion (the value may be deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest


def _json(text: str) -> Any:
    try:
        value = json.loads(text)
    except RecursionError:
        raise ConfigFileError(f"nested deeper than {MAX_DEPTH} levels") from None
    if _depth(value) > MAX_DEPTH:
        raise ConfigFileError(f"nested deeper than {MAX_DEPTH} levels")
    return value


def _parse_error(exc: Exception, kind: str) -> str:
    """One line: the parser's problem and where, not its multi-line report."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"not valid {kind}: {exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return f"not valid {kind}: {' '.join(str(exc).split())}"


def load_mapping(path: str | Path, *, expected: str = "a mapping") -> dict[str, Any]:
    """The mapping a job file holds; ``expected`` describes it in the error for anything else
    (e.g. ``"a mapping with space, dataset, ..."``)."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise ConfigFileError(f"{path}: larger than {MAX_BYTES // 1024} KiB; not a job file")
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        loaded = _json(data.decode()) if kind == "JSON" else _yaml(data.decode())
    except UnicodeDecodeError:
        raise ConfigFileError(f"{path}: not UTF-8 text") from None
    except ConfigFileError as exc:  # refused while parsing, before the name was known
        raise ConfigFileError(f"{path}: {exc}") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigFileError(f"{path}: {_parse_error(exc, kind)}") from None
    if not isinstance(loaded, dict):
        raise ConfigFileError(f"{path}: expected {expected}, got {type(loaded).__name__}")
    return loaded
