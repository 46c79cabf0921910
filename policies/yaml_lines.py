"""Reading YAML while keeping the line of every node, so errors can point at the file.

`yaml.safe_load` throws positions away; we compose the node tree once, construct the plain
data from it, and keep the tree to map a pydantic error location back to a line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from bot.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a file: 1-based line, dotted location, and the reason."""

    line: int
    location: str
    reason: str


class YamlSyntaxError(Exception):
    """The text is not YAML at all; carries the problems found (normally one)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.reason for p in problems))
        self.problems = problems


def compose(text: str) -> tuple[yaml.Node | None, Any]:
    """Parse one YAML document into (node tree, plain data); (None, None) if it is empty."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        return node, loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if mark is not None and mark.index >= len(text) and exc.context_mark is not None:
            # "got <stream end>" points past the last line; where the open bracket or
            # quote started is what the reader needs to find.
            mark = exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        reason = exc.problem or "unreadable"
        if exc.context and reason.startswith("but "):  # "expected one document but found..."
            reason = f"{exc.context} {reason}"
        elif exc.context and exc.context_mark is not None:
            reason += f" ({exc.context} started on line {exc.context_mark.line + 1})"
        raise YamlSyntaxError([Problem(line, "(syntax)", f"invalid YAML: {reason}")]) from exc
    except yaml.YAMLError as exc:  # unmarked errors are rare (e.g. bad encoding)
        raise YamlSyntaxError([Problem(1, "(syntax)", f"invalid YAML: {exc}")]) from exc
    finally:
        loader.dispose()


def line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _child(node: yaml.Node, key: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """(key node, value node) of `key` under `node`; for a list item both are the item."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(key):
                return key_node, value_node
    elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
        item: yaml.Node = node.value[key]
        return item, item
    return None


def locate(root: yaml.Node, loc: Sequence[str | int], *, at_key: bool = False) -> int:
    """The line of the node at `loc`, or of the deepest ancestor that exists.

    A missing key has no node, so its parent mapping's line is the useful answer. With
    `at_key` the line of the key itself is returned (what an unknown key should point at).
    """
    node, line = root, line_of(root)
    for part in loc:
        found = _child(node, part)
        if found is None:
            return line
        key_node, node = found
        line = line_of(key_node if at_key else node)
    return line


def duplicate_keys(node: yaml.Node, path: tuple[str, ...] = ()) -> list[Problem]:
    """Keys given twice in one mapping: YAML keeps the last silently, which hides mistakes."""
    problems: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            where = ".".join((*path, key))
            if key in seen:
                problems.append(Problem(line_of(key_node), where, "duplicate key"))
            seen.add(key)
            problems.extend(duplicate_keys(value_node, (*path, key)))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems.extend(duplicate_keys(item, (*path, str(index))))
    return problems


class YamlFileError(ConfigError):
    """A YAML configuration file is unusable; `.errors` holds (line, location, reason) for
    each problem, and the message has one `FILE:LINE: location: reason` line per problem."""

    code = "yaml_file_error"

    def __init__(self, filename: str, problems: list[Problem]) -> None:
        self.filename = filename
        self.errors = [(p.line, p.location, p.reason) for p in problems]
        lines = [f"{filename}:{p.line}: {p.location}: {p.reason}" for p in problems]
        super().__init__("\n".join(lines))


def problem_from(root: yaml.Node, error: ErrorDetails) -> Problem:
    """A pydantic validation error as a `Problem` at the line of the node it is about."""
    loc = [part for part in error["loc"] if isinstance(part, str | int)]
    location = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    location = location.lstrip(".") or "(top level)"
    kind = error["type"]
    if kind == "missing":
        hint = " (the first line should be 'version: 1')" if loc == ["version"] else ""
        return Problem(locate(root, loc), location, "missing required key" + hint)
    if kind == "extra_forbidden":
        return Problem(locate(root, loc, at_key=True), location, "unknown key")
    reason = str(error["msg"])
    if kind in ("model_type", "dict_type"):  # pydantic names our classes; the reader has YAML
        reason = "expected keys indented under this one"
    if kind == "value_error":  # our own validators: drop pydantic's "Value error, " prefix
        reason = str(error.get("ctx", {}).get("error", reason))
    elif error.get("input") is None:
        reason += " (got nothing)"
    elif isinstance(error["input"], str | int | float | bool):
        reason += f" (got {error['input']!r})"
    return Problem(locate(root, loc), location, reason)


def validate_yaml(
    text: str, model: type[M], filename: str, error: type[YamlFileError], expected: str
) -> tuple[M, yaml.Node]:
    """`text` parsed and validated as `model`, with its node tree; `error` lists every
    problem with its line (`expected` says what the top level should hold)."""
    try:
        root, data = compose(text)
    except YamlSyntaxError as exc:
        raise error(filename, exc.problems) from exc
    if root is None:
        raise error(filename, [Problem(1, "(file)", f"the file is empty; expected {expected}")])
    if not isinstance(data, dict):
        raise error(filename, [Problem(locate(root, ()), "(top level)", f"expected {expected}")])
    if problems := duplicate_keys(root):
        raise error(filename, problems)
    try:
        return model.model_validate(data), root
    except ValidationError as exc:
        found = [problem_from(root, e) for e in exc.errors(include_url=False)]
        raise error(filename, sorted(found, key=lambda p: p.line)) from exc
