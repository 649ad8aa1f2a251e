"""Bounds on what clients may send, shared by the REST API, the pages and imports.

- Ids: every id is a 64-bit integer (``BigAutoField``); a larger number in a URL is no
  row at all (404), never a value handed to the database, which would refuse it with an
  error (SQLite cannot even bind it). URLs take ids with ``<id:name>``
  (``register_id_converter``, called by each app's ``urls.py``).
- JSON: nested at most ``JSON_MAX_DEPTH`` levels (Python's parser and the walks over a
  value recurse; no record or request of ours nests a tenth as deep), and no text that a
  database column cannot hold: a NUL character (PostgreSQL's text and jsonb refuse it)
  or half of a surrogate pair (not Unicode, so not UTF-8: the driver cannot send it).
"""

from __future__ import annotations

import re
from typing import Any

from django.urls import converters, register_converter

MAX_ID = 2**63 - 1
JSON_MAX_DEPTH = 64

NUL_MESSAGE = "holds a NUL character (\\u0000), which cannot be stored: remove it"
SURROGATE_MESSAGE = "holds half of a surrogate pair (\\ud800-\\udfff), which is not valid Unicode: remove it"

_SURROGATE = re.compile("[\ud800-\udfff]")
# A surrogate can only reach JSON text as an escape (UTF-8 cannot encode one).
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def text_problem(text: str) -> str | None:
    """Why a database cannot store this text, or None when it can."""
    if "\x00" in text:
        return NUL_MESSAGE
    if _SURROGATE.search(text):
        return SURROGATE_MESSAGE
    return None


def json_problem(value: Any, *, max_depth: int = JSON_MAX_DEPTH) -> tuple[str, str] | None:
    """(field, what is wrong) for the first part of a decoded JSON value that nests deeper
    than ``max_depth`` or holds text a database cannot store (``text_problem``); None
    when there is none. The field is a dotted path (``labels.alice``,
    ``prompt.1.content``), empty for the value itself.

    Walked with a stack, not recursion: a value may nest thousands of levels deep."""
    stack: list[tuple[str, Any, int]] = [("", value, 1)]
    while stack:
        path, item, depth = stack.pop()
        if isinstance(item, str):
            reason = text_problem(item)
            if reason:
                return path, reason
            continue
        if isinstance(item, dict):
            children: Any = item.items()
        elif isinstance(item, list):
            children = enumerate(item)
        else:
            continue
        if depth > max_depth:
            return path, f"nests deeper than {max_depth} levels"
        for key, child in reversed(list(children)):
            name = str(key)
            reason = text_problem(name)
            if reason:
                return path, f"has a field name that {reason}"
            stack.append((f"{path}.{name}" if path else name, child, depth + 1))
    return None


def json_text_may_need_walk(raw: bytes, *, max_depth: int = JSON_MAX_DEPTH) -> bool:
    """Whether JSON text can hold what ``json_problem`` looks for: a NUL or a surrogate
    (only written as escapes) or more brackets than the depth allows. Text that cannot
    need not be walked once decoded, which keeps the common case at C speed."""
    escaped = b"\\u" in raw and (b"\\u0000" in raw or SURROGATE_ESCAPE.search(raw) is not None)
    return escaped or raw.count(b"[") + raw.count(b"{") > max_depth


class IdConverter:
    """``<id:name>``: an integer an id column can hold; a larger one matches no URL (404)."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            raise ValueError(f"{value} is larger than any id")  # Django: no match
        return number

    def to_url(self, value: int) -> str:
        return str(value)


def register_id_converter() -> None:
    """Make ``<id:…>`` available to URL patterns; every ``urls.py`` that uses it calls this
    first (once registered, later calls do nothing)."""
    if "id" not in converters.get_converters():
        register_converter(IdConverter, "id")
