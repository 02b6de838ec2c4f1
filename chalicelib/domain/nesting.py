"""How deep a client's JSON or YAML may nest, and parsing that enforces it.

Python's JSON and YAML parsers recurse once per level (PyYAML several times), so a body
nested about 1,000 levels deep raises RecursionError inside the parser; a shallower one
that does parse still recurses later (json.dumps, the segment parser, DynamoDB's
serialiser). Every entry point that decodes what a client or a marketer sends goes through
here: a parser's RecursionError becomes `TooDeeplyNested` (a ValueError, so the callers'
existing "bad input → 400" handling applies), and what parsed is measured without
recursion against a limit far below the interpreter's.
"""
from __future__ import annotations

import json

# Documents (definitions, admin bodies): a segment's all/any/not tree costs two levels per
# step (a mapping and its list), so 64 leaves room for ~30 nested conditions.
MAX_DOCUMENT_DEPTH = 64


class TooDeeplyNested(ValueError):
    def __init__(self, limit: int, what: str = "body"):
        super().__init__(f"{what} is nested more than {limit} levels deep")
        self.limit = limit


def nesting_depth(value: object, limit: int) -> int:
    """Depth of nested lists and mappings (a scalar is 0), iteratively; stops counting once
    past `limit`, so a huge document costs no more than its first too-deep branch."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def check_depth(value: object, limit: int = MAX_DOCUMENT_DEPTH, what: str = "body") -> object:
    if nesting_depth(value, limit) > limit:
        raise TooDeeplyNested(limit, what)
    return value


def load_json(text: str | bytes | bytearray, limit: int = MAX_DOCUMENT_DEPTH, what: str = "body") -> object:
    """json.loads, refusing anything nested more than `limit` levels (TooDeeplyNested);
    malformed JSON raises json.JSONDecodeError (a ValueError) as json.loads does."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise TooDeeplyNested(limit, what) from None
    return check_depth(value, limit, what)
