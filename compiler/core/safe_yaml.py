"""YAML read with limits checked before anything is built: size, nesting depth and aliases; duplicate keys refused.

``yaml.safe_load`` constructs nested collections recursively (a profile nested 10,000 levels deep raises
RecursionError, a traceback), expands every alias (a few lines of anchors make a structure of billions of
references) and keeps the last of two equal keys without a word. PyYAML's parser is not recursive, so its events
are counted first; then a loader that refuses duplicate keys builds the data. Written by hand: PyYAML has no
limits of its own, and ruamel.yaml's duplicate-key check is not a size or depth limit.
"""

from __future__ import annotations

from typing import Any

import yaml

#: a device profile is a few kilobytes; these limits are far above any real one
MAX_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_ALIASES = 64


class YamlLimitError(ValueError):
    """The text breaks a limit (size, depth, aliases): the message names which."""


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                dup = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base constructor names it
                continue
            if dup:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH, max_aliases: int = MAX_ALIASES) -> Any:
    """The data of a YAML document, as ``yaml.safe_load`` would build it, once the text is within the limits.
    Raises :class:`YamlLimitError` for a limit, ``yaml.YAMLError`` for bad YAML (a duplicate key included, with
    its line)."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > max_bytes:
        raise YamlLimitError(f"{size:,} bytes, more than the {max_bytes:,} allowed")
    depth = aliases = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > max_depth:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise YamlLimitError(f"nested more than {max_depth} levels deep (at line {line})")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > max_aliases:
                raise YamlLimitError(f"more than {max_aliases} aliases (*name)")
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
