"""YAML a person wrote, read strictly: plain values only, and nothing YAML does by surprise.

PyYAML's safe loader follows YAML 1.1, where `yes`, `on` and `no` are booleans (so `model: no`
is False), `1:30` is the integer 90, `017` is octal 15 and `2024-01-01` a date; a repeated key
silently keeps its last value, and a few lines of aliases can expand into gigabytes. Here plain
scalars follow YAML 1.2's core schema instead (`true`/`false`, decimal integers, floats, `null`;
everything else is text), and anchors, aliases, explicit tags, repeated keys, keys that are not
text and deep nesting are refused, each with the line it is on.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node

# Deeper than any settings file needs; PyYAML's composer recurses once per level.
MAX_NESTING = 10
# Longer integers are text (and then a type error): Python refuses to read over 4,300 digits,
# and no setting needs more than a few.
MAX_INTEGER_DIGITS = 30

# PyYAML tries these with `match`, hence the \Z.
_NULL = re.compile(r"(?:~|null|Null|NULL|)\Z")
_BOOL = re.compile(r"(?:true|True|TRUE|false|False|FALSE)\Z")
_INT = re.compile(rf"[-+]?[0-9]{{1,{MAX_INTEGER_DIGITS}}}\Z")
# No .inf or .nan: a setting is never infinite, and as text they fail the type check.
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")


class YamlRefused(ValueError):
    """The text is not YAML this service reads.

    `reason` is in the service's own words; where it has a "{}", `detail` goes there: a key,
    a tag or the parser's description, which may hold the file's text and so is shown quoted.
    """

    def __init__(self, reason: str, *, detail: str | None = None, line: int | None = None,
                 column: int | None = None):
        self.reason = reason
        self.detail = detail
        self.line = line  # 1-based, as an editor shows it
        self.column = column
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(where + reason.format(repr(detail)))


def load_yaml(text: str) -> Any:
    """The one document in `text`: None when it is empty or only comments."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader, made stricter
    except YamlRefused:
        raise
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        # "while scanning a simple key" + "could not find expected ':'" reads as one sentence.
        said = ", ".join(part for part in (error.context, error.problem) if part)
        raise YamlRefused("this is not valid YAML: {}" if said else "this is not valid YAML",
                          detail=said or None, **_position(mark)) from None
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        raise YamlRefused("YAML does not allow the character {}", detail=f"U+{error.character:04X}",
                          line=line, column=column) from None
    except yaml.YAMLError:
        raise YamlRefused("this is not valid YAML") from None


def _position(mark: yaml.Mark | None) -> dict[str, int]:
    return {"line": mark.line + 1, "column": mark.column + 1} if mark is not None else {}


class _StrictLoader(yaml.SafeLoader):
    # Only the resolvers below; the inherited YAML 1.1 ones (merge keys, timestamps, sexagesimal
    # and octal numbers, yes/no/on/off) are dropped.
    yaml_implicit_resolvers: dict = {}

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
            raise YamlRefused("anchors and aliases (`&name`, `*name`) are not accepted; "
                              "write the value out", **_position(event.start_mark))
        if getattr(event, "tag", None) is not None:
            raise YamlRefused("explicit tags such as {} are not accepted; write the plain value",
                              detail=event.tag, **_position(event.start_mark))
        if self._depth >= MAX_NESTING:
            raise YamlRefused(f"values are nested more than {MAX_NESTING} levels deep",
                              **_position(event.start_mark))
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                raise YamlRefused("keys are names such as `timeout`, not {}",
                                  detail=key_node.value if isinstance(key_node.value, str)
                                  else "a list or a mapping", **_position(key_node.start_mark))
            if key in seen:
                raise YamlRefused("the key {} appears twice; keep one", detail=key,
                                  **_position(key_node.start_mark))
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: Node) -> int:
        # Decimal whatever the leading zeros: YAML 1.1 would read 017 as octal.
        return int(self.construct_scalar(node))


_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""])
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+.0123456789"))
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)
