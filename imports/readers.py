"""Reading import files record by record, without loading them into memory.

JSONL and CSV yield each record with its line number; a JSON array yields each item with
its position in the array, since a pretty-printed array gives a record no single line. A
record that cannot be read becomes ``Broken`` with the reason; ``fatal`` when the rest of
the file cannot be read either.

Time and memory grow with the file, never faster, whatever it holds:

- The stream is only ever asked for blocks (``read(BLOCK)``), never iterated: Django's
  ``File.__iter__`` (an upload handed over as it is) joins the pieces of a long line one
  by one, which takes time quadratic in the line's length.
- No record may be longer than ``max_record_bytes`` (``IMPORT_MAX_RECORD_BYTES``):
  lines are read with a bound (``readline(limit)``), and a longer one is refused with its
  number while the rest of the file is read on; at most that much of it is ever held.
- A JSON array is split into items by a scanner that sees only strings, brackets and
  commas (``_JsonArrayItems``), and each item is decoded by orjson as a JSONL line is: a
  broken, too long or too deeply nested item is refused on its own and the next one is
  read. (An incremental parser such as ijson builds every level's path as it descends:
  its memory grows with the square of the nesting, 1 GB for a 40 kB file of brackets.)
- What a database column cannot hold - a NUL character, half of a surrogate pair,
  nesting deeper than ``core.limits.JSON_MAX_DEPTH`` - is refused with its field
  (``core.limits.json_problem``); only records whose text can hold one are walked.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson

from core.limits import JSON_MAX_DEPTH, NUL_MESSAGE, json_problem, json_text_may_need_walk, text_problem
from imports.report import FileFormat, ImportFailed

BLOCK = 1 << 16


@dataclass
class Broken:
    message: str
    fatal: bool = False
    field: str = ""


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


def iter_records(stream: IO[bytes], file_format: FileFormat, *, max_record_bytes: int) -> Iterator[tuple[Where, Any]]:
    """Yield (where, record or Broken) for every record of the file. Never raises for
    anything the file holds."""
    if file_format == FileFormat.JSONL:
        yield from _iter_jsonl(stream, max_record_bytes)
    elif file_format == FileFormat.CSV:
        yield from _iter_csv(stream, max_record_bytes)
    else:
        yield from _JsonArrayItems(stream, max_record_bytes)


def too_long(limit: int) -> str:
    return f"is longer than {limit:,} bytes (IMPORT_MAX_RECORD_BYTES): split the record or shorten it"


class _Blocks(io.RawIOBase):
    """Any stream that has ``read(n)`` as a raw stream, for a buffered reader."""

    def __init__(self, stream: IO[bytes]):
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _buffered(stream: IO[bytes]) -> io.BufferedReader:
    return io.BufferedReader(_Blocks(stream), buffer_size=BLOCK)


def _decoded(where: Where, raw: bytes) -> tuple[Where, Any]:
    """One JSON record (a JSONL line, an item of an array), decoded and checked."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return where, Broken(f"not valid JSON: {exc}")
    if json_text_may_need_walk(raw):
        problem = json_problem(record)
        if problem is not None:
            field, reason = problem
            return where, Broken(reason, field=field)
    return where, record


# --- JSONL ---------------------------------------------------------------------------------


def _iter_jsonl(stream: IO[bytes], limit: int) -> Iterator[tuple[Where, Any]]:
    reader = _buffered(stream)
    line_no = 0
    while True:
        # A line of up to ``limit`` bytes and its newline; one byte more means it is longer.
        raw = reader.readline(limit + 2)
        if not raw:
            return
        line_no += 1
        if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[3:]
        if len(raw.rstrip(b"\r\n")) > limit:
            while not raw.endswith(b"\n"):
                raw = reader.readline(BLOCK)
                if not raw:
                    break
            yield Where(line=line_no), Broken(too_long(limit))
            continue
        if not raw.strip():
            continue
        yield _decoded(Where(line=line_no), raw)


# --- CSV -----------------------------------------------------------------------------------


class _CsvLines:
    """The lines of a CSV file as text, for ``csv.reader``, each read with a bound. A line
    longer than the limit is handed on as an empty line and remembered by its number.
    Bytes that are not UTF-8 become lone surrogates (``surrogateescape``), which no
    decoded text holds otherwise: the cells holding them are named by the reader."""

    def __init__(self, stream: IO[bytes], limit: int):
        self._text = io.TextIOWrapper(_buffered(stream), encoding="utf-8-sig", errors="surrogateescape", newline="")
        self._limit = limit
        self.number = 0
        self.too_long: list[int] = []

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        # Characters, not bytes: one is at most four bytes, and the bound is what matters.
        line = self._text.readline(self._limit + 2)
        if not line:
            raise StopIteration
        self.number += 1
        if len(line.rstrip("\r\n")) > self._limit:
            while not line.endswith(("\n", "\r")):
                line = self._text.readline(BLOCK)
                if not line:
                    break
            self.too_long.append(self.number)
            return "\n"
        return line


_NOT_UTF8 = "is not valid UTF-8 text: save the file as UTF-8"


def _cell_problem(cell: str) -> str | None:
    reason = text_problem(cell)
    # Decoded text holds a surrogate only where a byte was not UTF-8.
    return reason if reason in (None, NUL_MESSAGE) else _NOT_UTF8


def _iter_csv(stream: IO[bytes], limit: int) -> Iterator[tuple[Where, Any]]:
    lines = _CsvLines(stream, limit)
    # csv's own bound on a cell (128 kB by default, process-wide) would stop a long answer.
    csv.field_size_limit(max(limit, csv.field_size_limit()))
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        yield Where(line=1), Broken(f"cannot read the CSV header: {exc}", fatal=True)
        return
    if lines.too_long:
        yield Where(line=1), Broken(f"the CSV header {too_long(limit)}", fatal=True)
        return
    header = [h.strip() for h in header]
    reason = next((r for r in map(_cell_problem, header) if r), None)
    if reason:
        yield Where(line=1), Broken(f"the CSV header {reason}", fatal=True)
        return
    if len(set(header)) != len(header) or any(not h for h in header):
        yield Where(line=1), Broken("the CSV header has empty or repeated column names", fatal=True)
        return
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            for number in lines.too_long:  # a long last line, read as an empty one
                yield Where(line=number), Broken(too_long(limit))
            return
        except csv.Error as exc:
            # A quoted cell that runs over many lines is bounded by csv's own limit.
            reason = f"has a cell that {too_long(limit)}" if "field limit" in str(exc) else f"broken CSV: {exc}"
            yield Where(line=start), Broken(f"{reason}; the rest of the file cannot be read", fatal=True)
            return
        line_no, start = start, reader.line_num + 1
        if lines.too_long:
            for number in lines.too_long:
                within = "" if number == line_no else f" (in the record that starts on line {line_no})"
                yield Where(line=number), Broken(too_long(limit) + within)
            lines.too_long.clear()
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield Where(line=line_no), Broken(f"has {len(row)} cells, the header has {len(header)}")
            continue
        problem = next(((name, r) for name, r in zip(header, map(_cell_problem, row)) if r), None)
        if problem is not None:
            yield Where(line=line_no), Broken(problem[1], field=problem[0])
            continue
        yield _csv_record(Where(line=line_no), header, row)


def _csv_record(where: Where, header: list[str], row: list[str]) -> tuple[Where, Any]:
    record: dict[str, Any] = {}
    structured = False
    for name, cell in zip(header, row, strict=True):
        if cell == "":
            continue
        record[name] = cell
        # Structured cells (a message list, a labels object) may be written as JSON.
        if cell.lstrip()[:1] in ("[", "{"):
            try:
                record[name] = orjson.loads(cell)
                structured = True
            except orjson.JSONDecodeError:
                pass
    problem = json_problem(record) if structured else None
    if problem is not None:
        return where, Broken(problem[1], field=problem[0])
    return where, record


# --- JSON arrays ---------------------------------------------------------------------------

# Between the bytes that matter (brackets, and commas at the array's own level) the
# scanner skips whole runs of anything else, strings included (a bracket or comma inside
# a string is text), in one match; a string that runs past the buffer's end stops the
# skip at its opening quote and is finished by _STRING_REST once more bytes are in.
_STRING = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
_SKIP_IN_ITEM = re.compile(rb'(?:[^"\[\]{}]++|' + _STRING + rb")*+", re.S)
_SKIP_IN_ARRAY = re.compile(rb'(?:[^"\[\]{},]++|' + _STRING + rb")*+", re.S)
_STRING_REST = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+("?)', re.S)
_JSON_SPACE = b" \t\r\n"


class _JsonArrayItems:
    """(where, record or Broken) for each item of a file holding one JSON array.

    The scanner keeps the bytes of the item being read (at most ``limit``), its nesting
    depth and whether it is inside a string; an item ends at a comma or the closing
    bracket at the array's own level and is decoded then."""

    def __init__(self, stream: IO[bytes], limit: int):
        self._stream = stream
        self._limit = limit
        self._buf = bytearray()
        self._eof = False

    def _more(self) -> bool:
        """Append the next block; False at the end of the file."""
        if self._eof:
            return False
        chunk = self._stream.read(BLOCK)
        if not chunk:
            self._eof = True
            return False
        self._buf += chunk
        return True

    def __iter__(self) -> Iterator[tuple[Where, Any]]:
        buf = self._buf
        # Up to the first byte that is not white space, without a byte-order mark.
        first = True
        while True:
            if not self._more():
                return  # empty, or only white space: no records
            if first:
                first = False
                if buf.startswith(codecs.BOM_UTF8):
                    del buf[:3]
            stripped = buf.lstrip(_JSON_SPACE)
            if stripped:
                break
            buf.clear()
        del buf[: len(buf) - len(stripped)]
        if not buf.startswith(b"["):
            yield Where(item=1), Broken("a .json file must hold one array of objects", fatal=True)
            return
        limit = self._limit
        item = 0
        depth = 1  # inside the array
        pos = 1  # where scanning goes on
        start = 1  # where the current item's text starts
        in_string = False
        skipped = ""  # why the current item is being skipped (too long, too deep)
        while True:
            if in_string:
                match = _STRING_REST.match(buf, pos)
                assert match is not None  # the pattern matches the empty string
                pos = match.end()
                if match.group(1):
                    in_string = False
                    continue
            else:
                skip = _SKIP_IN_ARRAY if depth == 1 else _SKIP_IN_ITEM
                pos = skip.match(buf, pos).end()  # type: ignore[union-attr]  # matches the empty string
                if pos < len(buf):
                    byte = buf[pos]
                    pos += 1
                    if byte == 0x22:  # '"': a string that goes on past the buffer
                        in_string = True
                        continue
                    if byte in b"[{":
                        depth += 1
                        if depth > JSON_MAX_DEPTH + 1 and not skipped:
                            skipped = f"nests deeper than {JSON_MAX_DEPTH} levels"
                        continue
                    if byte in b"]}":
                        depth -= 1
                    if depth == 0 or (depth == 1 and byte == 0x2C):  # ',' at the array's level
                        text = b"" if skipped else bytes(buf[start : pos - 1]).strip(_JSON_SPACE)
                        if len(text) > limit:
                            skipped = too_long(limit)
                        if byte == 0x2C or item or text or skipped:
                            item += 1
                            yield self._item(item, text, skipped)
                        skipped = ""
                        del buf[:pos]
                        pos = start = 0
                        if depth == 0:
                            yield from self._after_array(item, chr(byte))
                            return
                    continue
            # The buffer is scanned to its end: the item goes on in the next block.
            if pos - start > limit and not skipped:
                skipped = too_long(limit)
            if skipped:  # nothing of a skipped item is kept
                del buf[:pos]
                pos = start = 0
            if not self._more():
                where = "inside a string" if in_string else "before the array is closed"
                yield (
                    Where(item=item + 1),
                    Broken(f"not valid JSON after item {item}: the file ends {where}", fatal=True),
                )
                return

    def _item(self, item: int, text: bytes, skipped: str) -> tuple[Where, Any]:
        where = Where(item=item)
        if skipped:
            return where, Broken(skipped)
        if not text:
            return where, Broken("is empty (a comma too many?)")
        return _decoded(where, text)

    def _after_array(self, items: int, closing: str) -> Iterator[tuple[Where, Any]]:
        """Nothing but white space may follow the closing bracket."""
        after = f"not valid JSON after item {items}"
        if closing != "]":
            yield Where(item=items + 1), Broken(f"{after}: the array is closed with {closing}", fatal=True)
            return
        while True:
            if self._buf.strip(_JSON_SPACE):
                yield Where(item=items + 1), Broken(f"{after}: trailing garbage after the closing ]", fatal=True)
                return
            self._buf.clear()
            if not self._more():
                return
