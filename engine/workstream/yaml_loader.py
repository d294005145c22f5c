"""The YAML flavour of workstream files: PyYAML's safe loader, kept to what JSON can say."""

from __future__ import annotations

from typing import Any

import yaml

from stepledger.engine.workstream.limits import MAX_ALIAS_VALUES

from .duplicate_keys import DuplicateKeys, repeated

_MERGE_TAG = "tag:yaml.org,2002:merge"


class AliasError(yaml.composer.ComposerError):
    """Aliases that refer to themselves, or that expand past MAX_ALIAS_VALUES (an alias bomb)."""

    def __init__(self, problem: str, mark: Any, hint: str) -> None:
        super().__init__(None, None, problem, mark)
        self.hint = hint


def check_aliases(root: yaml.Node | None) -> None:
    """Refuse a node graph with a cycle, or whose aliases would add more than MAX_ALIAS_VALUES values.

    An alias is the very node its anchor names, so the composed graph is as small as the text; it
    is building Python data from it (and every later walk) that multiplies. Sizes are counted per
    distinct node, without expanding anything, so a "billion laughs" file is measured in microseconds.
    """
    if root is None:
        return
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
            continue
        if key in size:
            continue
        if key in on_path:
            hint = "an anchor's value cannot use its own alias; copy the value instead"
            raise AliasError("recursive alias: a value contains itself", node.start_mark, hint)
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                hint = "an anchor's value cannot use its own alias; copy the value instead"
                raise AliasError("recursive alias: a value contains itself", child.start_mark, hint)
            if id(child) not in size:
                stack.append((child, False))
    added = size[id(root)] - len(size)
    if added > MAX_ALIAS_VALUES:
        hint = "use fewer aliases (a file whose aliases nest inside each other grows exponentially)"
        message = (
            f"aliases expand to {added:,} more values than written, over the limit of {MAX_ALIAS_VALUES:,}"
        )
        raise AliasError(message, root.start_mark, hint)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


class PlainYamlLoader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver, so dates stay strings and the data stays JSON."""

    def compose_document(self) -> yaml.Node | None:
        """Compose the document, then refuse recursive aliases and alias bombs before building it."""
        node = super().compose_document()
        check_aliases(node)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Build a mapping, remembering repeated keys (keys merged in with `<<` may be overridden)."""
        own = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode) and k.tag != _MERGE_TAG]
        self.flatten_mapping(node)
        pairs = [
            (self.construct_object(k, deep=deep), self.construct_object(v, deep=deep)) for k, v in node.value
        ]
        try:
            out = dict(pairs)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "found an unhashable key", node.start_mark
            ) from None
        if len(set(own)) == len(own):
            return out
        marked = DuplicateKeys(out)
        marked.duplicate_keys = repeated(own)
        return marked


def _construct_map(loader: PlainYamlLoader, node: yaml.MappingNode) -> Any:
    # PyYAML yields the mapping before filling it (for anchors); fill it and carry the marker over.
    data = DuplicateKeys()
    yield data
    value = loader.construct_mapping(node)
    data.update(value)
    data.duplicate_keys = getattr(value, "duplicate_keys", ())


PlainYamlLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)


PlainYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
