"""The YAML flavour of workstream files: PyYAML's safe loader, kept to what JSON can say."""

from __future__ import annotations

from typing import Any

import yaml

from .reading import DuplicateKeys, repeated

_MERGE_TAG = "tag:yaml.org,2002:merge"


class PlainYamlLoader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver, so dates stay strings and the data stays JSON."""

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
