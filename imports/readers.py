"""Reading import files record by record, without loading them into memory.

JSONL and CSV yield each record with its line number; a JSON array is decoded
incrementally by ijson (yajl's C parser) and yields each item with its position in the
array, since a pretty-printed array gives a record no single line. A record that cannot
be read becomes ``Broken`` with the reason; ``fatal`` when the rest of the file cannot be
read either.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import ijson
import orjson

from imports.report import FileFormat, ImportFailed


@dataclass
class Broken:
    message: str
    fatal: bool = False
    field: str = ""


_NUL_MESSAGE = "holds a NUL character (\\u0000), which cannot be stored: remove it"


def nul_field(value: Any) -> str | None:
    """The field (``labels.alice``, ``prompt.1.content``) of the first text holding a NUL
    character, which a PostgreSQL text or JSON column refuses; None when there is none.
    Walked with a stack, not recursion: a record may nest thousands of levels deep."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return path or "(the record)"
            continue
        if isinstance(item, dict):
            children: Any = item.items()
        elif isinstance(item, list):
            children = enumerate(item)
        else:
            continue
        for key, child in reversed(list(children)):
            if "\x00" in str(key):
                return path or "(a field name)"
            stack.append((f"{path}.{key}" if path else str(key), child))
    return None


def _checked(where: Where, record: Any) -> tuple[Where, Any]:
    field = nul_field(record)
    return (where, record) if field is None else (where, Broken(_NUL_MESSAGE, field=field))


@dataclass(frozen=True)
class Where:
    """Where a record is in its file: a line (JSONL, CSV) or an item of a JSON array."""

    line: int | None = None
    item: int | None = None

    def __str__(self) -> str:
        return f"line {self.line}" if self.line is not None else f"item {self.item}" if self.item else "file"


def detect_format(filename: str, head: bytes) -> FileFormat:
    lowered = filename.lower()
    if lowered.endswith((".jsonl", ".ndjson")):
        return FileFormat.JSONL
    if lowered.endswith((".csv", ".tsv")):
        return FileFormat.CSV
    if lowered.endswith(".json"):
        return FileFormat.JSON
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"["):
        return FileFormat.JSON
    if stripped.startswith(b"{"):
        return FileFormat.JSONL
    raise ImportFailed(f"cannot tell the format of {filename!r}: name it .jsonl, .json or .csv")


def iter_records(stream: IO[bytes], file_format: FileFormat) -> Iterator[tuple[Where, Any]]:
    """Yield (where, record or Broken) for every record of the file."""
    if file_format == FileFormat.JSONL:
        yield from _iter_jsonl(stream)
    elif file_format == FileFormat.CSV:
        yield from _iter_csv(stream)
    else:
        yield from _iter_json_array(stream)


def _iter_jsonl(stream: IO[bytes]) -> Iterator[tuple[Where, Any]]:
    loads = orjson.loads
    for line_no, raw in enumerate(stream, 1):
        if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[3:]
        if not raw.strip():
            continue
        try:
            record = loads(raw)
        except orjson.JSONDecodeError as exc:
            yield Where(line=line_no), Broken(f"not valid JSON: {exc}")
            continue
        # JSON writes a NUL as \u0000: only a line holding one needs its values walked.
        yield _checked(Where(line=line_no), record) if b"\\u0000" in raw else (Where(line=line_no), record)


def _iter_csv(stream: IO[bytes]) -> Iterator[tuple[Where, Any]]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        return
    except (UnicodeDecodeError, csv.Error) as exc:
        yield Where(line=1), Broken(f"cannot read the CSV header: {exc}", fatal=True)
        return
    header = [h.strip() for h in header]
    if len(set(header)) != len(header) or any(not h for h in header):
        yield Where(line=1), Broken("the CSV header has empty or repeated column names", fatal=True)
        return
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            yield (
                Where(line=start),
                Broken(f"not valid UTF-8 ({exc.reason}); the rest of the file cannot be read", fatal=True),
            )
            return
        except csv.Error as exc:
            yield Where(line=start), Broken(f"broken CSV: {exc}", fatal=True)
            return
        line_no, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield Where(line=line_no), Broken(f"has {len(row)} cells, the header has {len(header)}")
            continue
        if any("\x00" in cell for cell in row):
            field = next(name for name, cell in zip(header, row, strict=True) if "\x00" in cell)
            yield Where(line=line_no), Broken(_NUL_MESSAGE, field=field)
            continue
        record: dict[str, Any] = {}
        for name, cell in zip(header, row, strict=True):
            if cell == "":
                continue
            # Structured cells (a message list, a labels object) may be written as JSON.
            if cell.lstrip()[:1] in "[{":
                try:
                    record[name] = json.loads(cell)
                    continue
                except (json.JSONDecodeError, RecursionError):
                    pass
            record[name] = cell
        yield Where(line=line_no), record


class _Prefixed(io.RawIOBase):
    """`head` (already read from the stream) followed by the rest of the stream."""

    def __init__(self, head: bytes, stream: IO[bytes]):
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._head[: len(buffer)] if self._head else self._stream.read(len(buffer))
        self._head = self._head[len(data) :]
        buffer[: len(data)] = data
        return len(data)


_JSON_SPACE = b" \t\r\n"


def _iter_json_array(stream: IO[bytes]) -> Iterator[tuple[Where, Any]]:
    # Read up to the first byte that is not white space, without a byte-order mark (yajl
    # refuses one), so the file's kind is told by its first character however it is indented.
    head = stream.read(1 << 16)
    head = head.removeprefix(codecs.BOM_UTF8)
    while head and not head.lstrip(_JSON_SPACE):
        head = stream.read(1 << 16)
    head = head.lstrip(_JSON_SPACE)
    if not head:
        return
    source = io.BufferedReader(_Prefixed(head, stream), buffer_size=1 << 16)
    if not head.startswith(b"["):
        yield Where(item=1), Broken("a .json file must hold one array of objects", fatal=True)
        return
    item = 0
    try:
        # The whole document is parsed, so anything after the closing ']' is an error too.
        for item, value in enumerate(ijson.items(source, "item", use_float=True), 1):
            yield _checked(Where(item=item), value)
    except ijson.common.IncompleteJSONError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "the file ends too early"
        reason = reason.removeprefix("b'").replace("\\n", " ").strip()
        yield Where(item=item + 1), Broken(f"not valid JSON after item {item}: {reason}", fatal=True)
    except ijson.common.JSONError as exc:
        yield Where(item=item + 1), Broken(f"not valid JSON after item {item}: {exc}", fatal=True)
