"""Bounds on free-form JSON fields (JSON schemas, tool parameters, tool_choice, content parts).

A field typed `dict[str, Any]` accepts any JSON, however deep or large. Deep
values break things far from the request: Python's pickle (the job's trip to
the runner) and llama.cpp's grammar compiler recurse per level, and a schema
200 levels deep took 28 s to compile for a five-token answer. So every
free-form field is walked once at validation, without recursion, and refused
with 400 naming the field when it nests deeper or holds more values than a
real schema needs (OpenAI's own structured outputs allow 10 levels of objects,
which is about 21 JSON levels).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

MAX_DEPTH = 32  # JSON levels: a schema with 15 levels of nested objects
MAX_VALUES = 4096  # every key, string, number and container counts as one


def check_json_shape(value: Any, *, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES) -> Any:
    """`value` unchanged if it is at most `max_depth` levels deep and has at most `max_values` values."""
    count = 1
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise PydanticCustomError(
                "json_too_deep", "nests more than {max_depth} levels deep; flatten it", {"max_depth": max_depth}
            )
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        count += len(children) * (2 if isinstance(node, dict) else 1)  # a key counts as a value too
        if count > max_values:  # checked before the children are queued: a huge flat list stops here
            raise PydanticCustomError(
                "json_too_large", "holds more than {max_values} values; send a smaller one", {"max_values": max_values}
            )
        stack.extend((child, depth + 1) for child in children)
    return value


BoundedJson = Annotated[Any, BeforeValidator(check_json_shape)]
"""Any JSON value, within the depth and size bounds."""

BoundedObject = Annotated[dict[str, Any], BeforeValidator(check_json_shape)]
"""A JSON object (e.g. a JSON schema), within the depth and size bounds."""
