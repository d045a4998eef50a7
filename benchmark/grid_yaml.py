"""A grid file's text as plain data: YAML's safe loader, with duplicate keys refused at any depth.

PyYAML keeps the last of two equal keys without a word (``noise:`` twice, a scenario named twice): a grid
would run something other than what its reader sees. Merge keys (``<<: *base``) keep their meaning: keys of
the mapping itself override merged ones, which is not a duplicate.
"""

from __future__ import annotations

from typing import Any

import yaml

from sepbench.errors import short

_SAFE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser when built; construction stays Python's
MERGE_TAG = "tag:yaml.org,2002:merge"
VALUE_TAG = "tag:yaml.org,2002:value"  # the key `=`, which the safe loader reads as the string "="


class DuplicateKey(yaml.YAMLError):
    """A mapping that names the same key twice; ``lines`` are 1-based, first and second occurrence."""

    def __init__(self, key: Any, lines: tuple[int, int]) -> None:
        where = f"lines {lines[0]} and {lines[1]}" if lines[0] != lines[1] else f"twice on line {lines[0]}"
        super().__init__(f"duplicate key {short(key)} ({where})")
        self.key, self.lines = key, lines


class _StrictSafeLoader(_SAFE):  # type: ignore[misc, valid-type]
    """The safe loader; every mapping's own keys are checked once, before merge keys are expanded into it."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._checked: set[int] = set()

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        # PyYAML flattens a mapping (explicit keys + merged ones) in place, and flattens a merged mapping again
        # each time it is merged: only the first visit sees the keys as written.
        if id(node) not in self._checked:
            self._checked.add(id(node))
            self._refuse_duplicates(node)
        super().flatten_mapping(node)

    def _refuse_duplicates(self, node: yaml.MappingNode) -> None:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                key: Any = "<<"
            elif key_node.tag == VALUE_TAG:
                key = key_node.value
            elif isinstance(key_node, yaml.ScalarNode):
                key = self.construct_object(key_node)  # 1 and 1.0, yes and true: equal keys once loaded
            else:
                continue  # a list or mapping as a key: the safe loader refuses it itself
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise DuplicateKey(key, (seen[key], line))
                seen[key] = line
            except TypeError:  # unhashable: refused by the safe loader with its own message
                continue


def load_text(data: bytes | str) -> Any:
    """Plain data (dicts, lists, strings, numbers) from YAML text; :class:`DuplicateKey` on a repeated key,
    another ``yaml.YAMLError`` on text that is not YAML."""
    return yaml.load(data, Loader=_StrictSafeLoader)  # noqa: S506 — a SafeLoader subclass: plain data only
