"""Reading import files: every record or a clear error on its line or item, whatever the
bytes; time and memory that grow with the file and never faster (imports/readers.py)."""

from __future__ import annotations

import codecs
import csv
import io
import json
import tracemalloc

import pytest
from django.core.files.base import File
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from core.limits import JSON_MAX_DEPTH
from imports.readers import BLOCK, Broken, Where, iter_records
from imports.report import FileFormat

# Bounded and derandomized: the same examples on every run, a few seconds in all.
PROPERTY = hypothesis_settings(
    max_examples=40, derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
LIMIT = 4096


def read(data: bytes, file_format: FileFormat | str, limit: int = LIMIT) -> list[tuple[Where, object]]:
    return list(iter_records(io.BytesIO(data), FileFormat(file_format), max_record_bytes=limit))


def messages(records) -> list[tuple[str, str]]:
    return [(str(where), record.message) for where, record in records if isinstance(record, Broken)]


class _OneLongLine(io.RawIOBase):
    """``size`` bytes of one line (never held: generated as asked), then short records.
    Counts the reads and refuses to be iterated line by line."""

    def __init__(self, size: int, head: bytes = b"", tail: bytes = b"\n"):
        self.head, self.size, self.tail = head, size, tail
        self.sent = 0
        self.reads = 0

    def readable(self) -> bool:
        return True

    def __iter__(self):
        raise AssertionError("the reader iterated the stream (quadratic for long lines in Django's File)")

    def readline(self, *args):
        raise AssertionError("the reader asked the stream itself for a line")

    def readinto(self, buffer) -> int:
        self.reads += 1
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n], self.head = self.head[:n], self.head[n:]
            return n
        if self.sent < self.size:
            n = min(len(buffer), self.size - self.sent)
            buffer[:n] = b"x" * n
            self.sent += n
            return n
        n = min(len(buffer), len(self.tail))
        buffer[:n], self.tail = self.tail[:n], self.tail[n:]
        return n


# --- limits --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "file_format,head,tail",
    [
        (FileFormat.JSONL, b'{"prompt": "one"}\n{"prompt": "', b'"}\n{"prompt": "three"}\n'),
        (FileFormat.CSV, b'prompt\none\n"', b'"\nthree\n'),
        (FileFormat.JSON, b'[{"prompt": "one"}, {"prompt": "', b'"}, {"prompt": "three"}]'),
    ],
)
def test_a_record_longer_than_the_limit_is_refused_on_its_line_and_the_next_ones_are_read(file_format, head, tail):
    stream = _OneLongLine(3 * 1024 * 1024, head=head, tail=tail)
    tracemalloc.start()
    records = list(iter_records(stream, file_format, max_record_bytes=256 * 1024))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    where = {FileFormat.JSONL: "line 2", FileFormat.CSV: "line 3", FileFormat.JSON: "item 2"}[file_format]
    assert [r for _, r in records if not isinstance(r, Broken)] == [{"prompt": "one"}, {"prompt": "three"}]
    [(place, message)] = messages(records)
    assert place == where
    assert "is longer than 262,144 bytes (IMPORT_MAX_RECORD_BYTES)" in message
    # Memory: never the whole line, at most the limit and a few blocks (3 MB were read).
    assert peak < 256 * 1024 + 8 * BLOCK
    # Time: the stream was asked for blocks (8 kB at least), each once, never iterated.
    assert stream.reads <= 3 * 1024 * 1024 // 8192 + 8


def test_a_long_line_within_the_limit_is_read_in_reads_proportional_to_its_length():
    for size in (1024 * 1024, 8 * 1024 * 1024):
        stream = _OneLongLine(size, head=b'{"text": "', tail=b'"}\n')
        [(where, record)] = list(iter_records(stream, FileFormat.JSONL, max_record_bytes=16 * 1024 * 1024))
        assert where.line == 1 and len(record["text"]) == size
        assert stream.reads <= size // BLOCK + 4


def test_an_upload_is_read_in_blocks_not_through_djangos_line_iterator(monkeypatch):
    # File.__iter__ joins the chunks of a line one at a time: a 60 MB line took 25 s.
    monkeypatch.setattr(File, "__iter__", lambda self: pytest.fail("File.__iter__ was used"))
    for file_format, data in [
        (FileFormat.JSONL, b'{"prompt": "one"}\n{"prompt": "two"}\n'),
        (FileFormat.CSV, b"prompt\none\ntwo\n"),
        (FileFormat.JSON, b'[{"prompt": "one"}, {"prompt": "two"}]'),
    ]:
        records = list(iter_records(File(io.BytesIO(data), name="upload"), file_format, max_record_bytes=LIMIT))
        assert [r["prompt"] for _, r in records] == ["one", "two"]


def test_nesting_is_refused_past_the_limit_in_every_format():
    deep = {"prompt": "x", "extra": json.loads("[" * JSON_MAX_DEPTH + "]" * JSON_MAX_DEPTH)}
    ok = {"prompt": "x", "extra": json.loads("[" * (JSON_MAX_DEPTH - 1) + "]" * (JSON_MAX_DEPTH - 1))}
    jsonl = (json.dumps(ok) + "\n" + json.dumps(deep) + "\n").encode()
    assert messages(read(jsonl, "jsonl")) == [("line 2", f"nests deeper than {JSON_MAX_DEPTH} levels")]
    array = json.dumps([ok, deep]).encode()
    assert messages(read(array, "json")) == [("item 2", f"nests deeper than {JSON_MAX_DEPTH} levels")]
    table = b'prompt,extra\nx,"' + json.dumps(deep["extra"]).encode() + b'"\n'
    assert messages(read(table, "csv")) == [("line 2", f"nests deeper than {JSON_MAX_DEPTH} levels")]


def test_forty_kilobytes_of_brackets_are_refused_without_building_what_they_nest():
    # An incremental parser that keeps every level's path used 1 GB on these 40 kB.
    depth = 20_000
    tracemalloc.start()
    records = read(b"[" * depth + b"]" * depth + b"", "json", limit=1 << 20)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert messages(records) == [("item 1", f"nests deeper than {JSON_MAX_DEPTH} levels")]
    assert peak < 4 * 1024 * 1024


@pytest.mark.parametrize(
    "file_format,data,where,what",
    [
        ("jsonl", b'{"a": "\\ud800"}\n{"a": 1}\n', "line 1", "not valid JSON: no low surrogate"),
        ("json", b'[{"a": "\\udc00"}, {"a": 1}]', "item 1", "not valid JSON"),
        ("csv", b'a\n"[""\\u0000""]"\n1\n', "line 2", "NUL character"),
        ("jsonl", b'{"a": "caf\xe9"}\n{"a": 1}\n', "line 1", "not valid JSON"),
        ("csv", b"a\ncaf\xe9\n1\n", "line 2", "is not valid UTF-8 text"),
        ("csv", b"a\nx\x00y\n1\n", "line 2", "NUL character"),
        ("json", b'[{"a": "caf\xe9"}, {"a": 1}]', "item 1", "not valid JSON"),
    ],
)
def test_text_that_no_column_can_hold_is_refused_on_its_line_and_the_rest_is_read(file_format, data, where, what):
    records = read(data, file_format)
    [(place, message)] = messages(records)
    assert place == where and what in message
    assert [r for _, r in records if not isinstance(r, Broken)] == [{"a": 1} if file_format != "csv" else {"a": "1"}]


def test_a_json_array_item_splits_only_where_the_array_does():
    items = [{"a": "x, ] } [ {"}, {"b": ["\\", '"', [1, {"c": "]"}]]}, {"d": "line\nbreak"}]
    for text in (json.dumps(items), json.dumps(items, indent=2), codecs.BOM_UTF8.decode() + json.dumps(items)):
        assert [r for _, r in read(text.encode(), "json")] == items
    assert messages(read(b"[1,,2]", "json")) == [("item 2", "is empty (a comma too many?)")]
    assert read(b"[]", "json") == [] and read(b" \n ", "json") == []


# --- properties ----------------------------------------------------------------------------


def storable(value) -> bool:
    """Whether a database can hold every text in the value (no NUL, no lone surrogate);
    written apart from core.limits on purpose."""
    if isinstance(value, str):
        return "\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return all(storable(k) and storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(storable(v) for v in value)
    return True


json_values = st.recursive(
    # Integers within 64 bits: orjson reads larger ones as floats, as JSON allows.
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
records = st.dictionaries(st.text(max_size=10), json_values, max_size=5)


def well_formed(results, file_format: FileFormat) -> None:
    """What every reader promises: (where, record or Broken), places in order, a message."""
    places = []
    for where, record in results:
        assert isinstance(where, Where)
        if isinstance(record, Broken):
            assert record.message
        places.append(where.line if file_format != FileFormat.JSON else where.item)
        assert places[-1] is not None and places[-1] >= 1
    assert places == sorted(places)
    assert sum(1 for _, r in results if isinstance(r, Broken) and r.fatal) <= 1


@PROPERTY
@given(data=st.binary(max_size=600), file_format=st.sampled_from(list(FileFormat)))
def test_random_bytes_give_records_or_clear_errors_never_an_exception(data, file_format):
    well_formed(read(data, file_format, limit=128), file_format)


@PROPERTY
@given(lines=st.lists(st.one_of(records, st.binary(max_size=40)), max_size=8))
def test_every_jsonl_line_is_its_record_or_an_error_naming_it(lines):
    raw = [
        json.dumps(line).encode() if isinstance(line, dict) else line.replace(b"\n", b" ").replace(b"\r", b" ")
        for line in lines
    ]
    results = read(b"\n".join(raw) + b"\n", "jsonl")
    well_formed(results, FileFormat.JSONL)
    by_line = {where.line: record for where, record in results}
    for number, (line, data) in enumerate(zip(lines, raw), 1):
        if isinstance(line, dict):
            # Well-formed JSON: read back as it was, unless a database could not hold it.
            assert (
                by_line[number] == line
                if storable(line) and len(data) <= LIMIT
                else isinstance(by_line[number], Broken)
            )
        elif data.strip():
            assert number in by_line  # whatever the bytes, the line has its record or its error


@PROPERTY
@given(items=st.lists(records, max_size=6), indent=st.sampled_from([None, 1, 4]))
def test_a_json_array_gives_each_item_or_an_error_naming_it(items, indent):
    text = json.dumps(items, indent=indent)
    results = read(text.encode("utf-8", "surrogatepass"), "json", limit=1 << 20)
    well_formed(results, FileFormat.JSON)
    assert [where.item for where, _ in results] == list(range(1, len(items) + 1))
    for (_, got), item in zip(results, items):
        assert got == item if storable(item) else isinstance(got, Broken)


@PROPERTY
@given(items=st.lists(records, max_size=6), cut=st.integers(min_value=0, max_value=400))
def test_a_cut_or_damaged_json_array_never_raises(items, cut):
    data = json.dumps(items).encode("utf-8", "surrogatepass")
    well_formed(read(data[:cut], "json"), FileFormat.JSON)
    damaged = data[:cut] + b"\xff{]," + data[cut:]
    well_formed(read(damaged, "json"), FileFormat.JSON)


@PROPERTY
@given(
    rows=st.lists(st.lists(st.text(max_size=12), min_size=2, max_size=2), max_size=6),
    garbage=st.binary(max_size=20),
    where=st.integers(min_value=0, max_value=6),
)
def test_a_csv_file_gives_each_row_or_an_error_naming_its_line(rows, garbage, where):
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["prompt", "tags"])
    writer.writerows(rows)
    lines = text.getvalue().encode("utf-8", "surrogatepass").split(b"\r\n")
    lines.insert(min(where + 1, len(lines)), garbage.replace(b"\n", b" ").replace(b"\r", b" "))
    well_formed(read(b"\r\n".join(lines), "csv"), FileFormat.CSV)


@PROPERTY
@given(depth=st.integers(min_value=1, max_value=3 * JSON_MAX_DEPTH), file_format=st.sampled_from(["jsonl", "json"]))
def test_nesting_is_refused_exactly_past_the_limit(depth, file_format):
    record = {"prompt": "x", "extra": json.loads("[" * (depth - 1) + "]" * (depth - 1)) if depth > 1 else 1}
    data = json.dumps(record if file_format == "jsonl" else [record]).encode()
    [(_, got)] = read(data, file_format, limit=1 << 20)
    assert isinstance(got, Broken) == (depth > JSON_MAX_DEPTH)


@PROPERTY
@given(size=st.integers(min_value=0, max_value=3 * 200), file_format=st.sampled_from(list(FileFormat)))
def test_a_record_is_refused_exactly_when_it_is_longer_than_the_limit(size, file_format):
    value = "x" * size
    if file_format == FileFormat.CSV:
        data, length = b"prompt\n" + value.encode() + b"\n", size
    else:
        raw = json.dumps({"prompt": value}).encode()
        data, length = (raw + b"\n", len(raw)) if file_format == FileFormat.JSONL else (b"[" + raw + b"]", len(raw))
    results = read(data, file_format, limit=200)
    if size == 0 and file_format == FileFormat.CSV:
        assert results == []
        return
    [(_, got)] = results
    assert isinstance(got, Broken) == (length > 200)
