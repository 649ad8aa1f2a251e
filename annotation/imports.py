"""Imports of prompts, samples and ready-made pairs (with optional existing labels).

Files stream: records are read one at a time (JSONL, CSV, or a JSON array decoded
incrementally), validated, and written in batches of ``IMPORT_BATCH_SIZE``; memory
does not grow with the file. Every record is checked and every problem is reported
with its line and field. The whole import runs in one transaction: by default a
single bad line means nothing is written; with ``skip_invalid`` the bad lines are
reported and the rest is committed.

Accepted shapes (aliases in brackets):
- prompts: ``prompt`` [messages, conversation, input, text] as a string or a list of
  ``{role, content}``; ``tags`` (list, or "a,b" in CSV); ``id`` [external_id]; ``source``.
- samples: one prompt reference - ``prompt_id``, ``prompt_external_id``, ``prompt_hash``
  or an inline ``prompt``; ``model`` [model_version]; ``text`` [response, completion,
  output]; optional ``sampling_params``, ``seed``, ``prompt_tokens``,
  ``completion_tokens``, ``latency_ms``, ``finish_reason``.
- pairs: ``prompt`` [input, messages, conversation, question]; ``response_a``
  [output_1, answer_a, completion_a]; ``response_b`` [output_2, answer_b, completion_b];
  optional ``model_a`` / ``model_b``; labels as label columns (``label`` by default:
  1/2, A/B, tie, both_bad, cant_judge …, one outside annotator per column), a
  ``labels`` object {annotator: label}, or a ``judgments`` list of
  {annotator, preferred, strength, safety, rationale}; optional ``strength``,
  ``gold`` (the known answer, making the pair a gold item), ``tags``, ``id``.
  The LLMBar files (input, output_1, output_2, label) import as they are.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import IO, Any

import orjson
from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from annotation.bulk import allocate_ids, analyze, constraints_immediate, fetch, in_values, insert_rows
from annotation.models import (
    Comparison,
    Judgment,
    JudgmentSource,
    PairingStrategy,
    Preference,
    Project,
    Prompt,
    Round,
    RoundStatus,
    Safety,
    Sample,
    Strength,
)
from annotation.services import (
    external_annotator_get_or_create,
    messages_hash,
    messages_normalize,
    messages_turns,
    model_version_get_or_create,
    round_build_comparisons,
    round_create,
    text_hash,
)


# Imports that write at least this many rows refresh the planner's statistics.
ANALYZE_AFTER_ROWS = 10_000


class ImportKind(StrEnum):
    PROMPTS = "prompts"
    SAMPLES = "samples"
    PAIRS = "pairs"


class FileFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    JSON = "json"


class ImportFailed(Exception):
    """Raised for problems with the whole import (not one line): bad options, a broken file."""


@dataclass
class RowError:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


@dataclass
class ImportOptions:
    kind: ImportKind
    project: Project
    round: Round | None = None
    source: str = ""
    skip_invalid: bool = False
    file_format: FileFormat | None = None
    model_a: str = "model-a"
    model_b: str = "model-b"
    label_columns: tuple[str, ...] = ("label",)
    extra_tags: tuple[str, ...] = ()
    batch_size: int = 0  # 0: settings.IMPORT_BATCH_SIZE
    max_errors: int = 0  # 0: settings.IMPORT_MAX_ERRORS

    def __post_init__(self) -> None:
        # Normalised here, once, for every caller (command, API, upload form).
        self.source = self.source.strip()
        self.label_columns = tuple(c.strip() for c in self.label_columns if c and c.strip()) or ("label",)
        self.extra_tags = tuple(dict.fromkeys(t.strip().lower() for t in self.extra_tags if t and t.strip()))
        self.batch_size = self.batch_size or settings.IMPORT_BATCH_SIZE
        self.max_errors = self.max_errors or settings.IMPORT_MAX_ERRORS


@dataclass
class ImportReport:
    kind: str
    records: int = 0
    valid: int = 0
    created: dict[str, int] = field(default_factory=dict)
    existing: dict[str, int] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    ignored_fields: set[str] = field(default_factory=set)
    committed: bool = False
    round_id: int | None = None
    seconds: float = 0.0

    def add(self, bucket: str, name: str, n: int = 1) -> None:
        target = self.created if bucket == "created" else self.existing
        if n:
            target[name] = target.get(name, 0) + n

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "committed": self.committed,
            "records": self.records,
            "valid": self.valid,
            "created": self.created,
            "existing": self.existing,
            "error_count": self.error_count,
            "errors": [{"line": e.line, "field": e.field, "message": e.message} for e in self.errors],
            "errors_truncated": self.error_count > len(self.errors),
            "ignored_fields": sorted(self.ignored_fields),
            "round_id": self.round_id,
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        state = "committed" if self.committed else "nothing written"
        parts = [f"{self.records} records, {self.valid} valid, {self.error_count} with errors ({state})"]
        if self.created:
            parts.append("created " + ", ".join(f"{v} {k}" for k, v in sorted(self.created.items())))
        if self.existing:
            parts.append("already present " + ", ".join(f"{v} {k}" for k, v in sorted(self.existing.items())))
        if self.ignored_fields:
            parts.append("ignored fields: " + ", ".join(sorted(self.ignored_fields)))
        return "; ".join(parts)


# --- Reading -------------------------------------------------------------------------


@dataclass
class _Broken:
    message: str
    fatal: bool = False


def detect_format(filename: str, head: bytes) -> FileFormat:
    lowered = filename.lower()
    if lowered.endswith((".jsonl", ".ndjson")):
        return FileFormat.JSONL
    if lowered.endswith((".csv", ".tsv")):
        return FileFormat.CSV
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"["):
        return FileFormat.JSON
    if stripped.startswith(b"{"):
        return FileFormat.JSONL
    raise ImportFailed(f"cannot tell the format of {filename!r}: name it .jsonl, .json or .csv")


def iter_records(stream: IO[bytes], file_format: FileFormat) -> Iterator[tuple[int, Any]]:
    """Yield (line number, record or _Broken) without loading the file into memory."""
    if file_format == FileFormat.JSONL:
        yield from _iter_jsonl(stream)
    elif file_format == FileFormat.CSV:
        yield from _iter_csv(stream)
    else:
        yield from _iter_json_array(stream)


def _iter_jsonl(stream: IO[bytes]) -> Iterator[tuple[int, Any]]:
    loads = orjson.loads
    for line_no, raw in enumerate(stream, 1):
        if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[3:]
        if not raw.strip():
            continue
        try:
            yield line_no, loads(raw)
        except orjson.JSONDecodeError as exc:
            yield line_no, _Broken(f"not valid JSON: {exc}")


def _iter_csv(stream: IO[bytes]) -> Iterator[tuple[int, Any]]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        return
    except (UnicodeDecodeError, csv.Error) as exc:
        yield 1, _Broken(f"cannot read the CSV header: {exc}", fatal=True)
        return
    header = [h.strip() for h in header]
    if len(set(header)) != len(header) or any(not h for h in header):
        yield 1, _Broken("the CSV header has empty or repeated column names", fatal=True)
        return
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            yield start, _Broken(f"not valid UTF-8 ({exc.reason}); the rest of the file cannot be read", fatal=True)
            return
        except csv.Error as exc:
            yield start, _Broken(f"broken CSV: {exc}", fatal=True)
            return
        line_no, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield line_no, _Broken(f"has {len(row)} cells, the header has {len(header)}")
            continue
        record: dict[str, Any] = {}
        for name, cell in zip(header, row):
            if cell == "":
                continue
            stripped = cell.lstrip()
            # Structured cells (a message list, a labels object) may be written as JSON.
            if stripped[:1] in "[{":
                try:
                    record[name] = json.loads(cell)
                    continue
                except json.JSONDecodeError:
                    pass
            record[name] = cell
        yield line_no, record


_WS = re.compile(r"[ \t\r\n]*")


def _iter_json_array(stream: IO[bytes], chunk_size: int = 1 << 20) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder()
    incremental = codecs.getincrementaldecoder("utf-8-sig")()
    buf, pos, eof = "", 0, False
    line_at_pos = 1  # line number of buf[pos]

    def fill() -> bool:
        nonlocal buf, pos, eof
        if eof:
            return False
        chunk = stream.read(chunk_size)
        try:
            text = incremental.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            raise ImportFailed(f"line {line_at_pos} or later: not valid UTF-8 ({exc.reason})") from exc
        buf = buf[pos:] + text
        pos = 0
        eof = not chunk
        return True

    def skip_ws() -> bool:
        nonlocal pos, line_at_pos
        while True:
            end = _WS.match(buf, pos).end()
            line_at_pos += buf.count("\n", pos, end)
            pos = end
            if pos < len(buf):
                return True
            if not fill():
                return False

    if not skip_ws():
        return
    if buf[pos] != "[":
        yield line_at_pos, _Broken("a .json file must hold one array of objects", fatal=True)
        return
    pos += 1
    expect_value = True
    first = True
    while True:
        if not skip_ws():
            yield line_at_pos, _Broken("the file ends before the closing ']'", fatal=True)
            return
        ch = buf[pos]
        if expect_value:
            if ch == "]" and first:
                return
            while True:
                try:
                    value, end = decoder.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as exc:
                    if not eof and fill():
                        continue
                    line = line_at_pos + buf.count("\n", pos, exc.pos)
                    yield line, _Broken(f"not valid JSON: {exc.msg}", fatal=True)
                    return
            yield line_at_pos, value
            line_at_pos += buf.count("\n", pos, end)
            pos = end
            expect_value, first = False, False
        else:
            if ch == ",":
                pos += 1
                expect_value = True
            elif ch == "]":
                return
            else:
                yield line_at_pos, _Broken(f"expected ',' or ']' between records, found {ch!r}", fatal=True)
                return


# --- Validation ----------------------------------------------------------------------

_PREFERENCE_WORDS = {
    "1": Preference.A, "a": Preference.A, "model_a": Preference.A, "output_1": Preference.A,
    "response_a": Preference.A, "left": Preference.A,
    "2": Preference.B, "b": Preference.B, "model_b": Preference.B, "output_2": Preference.B,
    "response_b": Preference.B, "right": Preference.B,
    "tie": Preference.TIE, "0": Preference.TIE, "equal": Preference.TIE,
    "both_bad": Preference.BOTH_BAD, "both bad": Preference.BOTH_BAD, "bothbad": Preference.BOTH_BAD,
    "tie (bothbad)": Preference.BOTH_BAD, "not_rankable": Preference.BOTH_BAD,
    "cant_judge": Preference.CANT_JUDGE, "can't judge": Preference.CANT_JUDGE, "unsure": Preference.CANT_JUDGE,
    "skip": Preference.CANT_JUDGE,
}
_STRENGTH_WORDS = {
    "significantly": Strength.SIGNIFICANTLY, "significantly better": Strength.SIGNIFICANTLY,
    "much better": Strength.SIGNIFICANTLY, "3": Strength.SIGNIFICANTLY,
    "better": Strength.BETTER, "2": Strength.BETTER,
    "slightly": Strength.SLIGHTLY, "slightly better": Strength.SLIGHTLY, "1": Strength.SLIGHTLY,
    "negligibly": Strength.NEGLIGIBLY, "negligibly better": Strength.NEGLIGIBLY, "marginally better": Strength.NEGLIGIBLY,
    "negligibly better/unsure": Strength.NEGLIGIBLY, "unsure": Strength.NEGLIGIBLY, "0": Strength.NEGLIGIBLY,
}
_SAFETY_WORDS = {s.value: s for s in Safety} | {s.label.lower(): s for s in Safety}


def parse_preference(value: Any) -> Preference:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{value!r} is not a label")
    key = str(value).strip().lower()
    if key in _PREFERENCE_WORDS:
        return _PREFERENCE_WORDS[key]
    raise ValueError(f"{value!r} is not a label; use 1/2, A/B, tie, both_bad or cant_judge")


def parse_strength(value: Any) -> Strength:
    key = str(value).strip().lower()
    if key in _STRENGTH_WORDS:
        return _STRENGTH_WORDS[key]
    raise ValueError(f"{value!r} is not a strength; use significantly, better, slightly or negligibly")


def parse_safety(value: Any) -> Safety:
    key = str(value).strip().lower()
    if key in _SAFETY_WORDS:
        return _SAFETY_WORDS[key]
    raise ValueError(f"{value!r} is not a safety label; use {', '.join(s.value for s in Safety)}")


def _tags(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        items = re.split(r"[,;|]", value)
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = value
    else:
        raise ValueError("tags must be a list of strings or a comma-separated string")
    tags = []
    for item in items:
        tag = item.strip().lower()
        if tag and tag not in tags:
            if len(tag) > 64:
                raise ValueError(f"tag {tag[:20]!r}… is longer than 64 characters")
            tags.append(tag)
    return tags


def _ext_id(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError("an id must be a string or an integer")
    text = str(value).strip()
    if len(text) > 200:
        raise ValueError("an id is at most 200 characters")
    return text


class _Row(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    tags: list[str] = Field(default_factory=list)
    external_id: str = Field("", validation_alias=AliasChoices("id", "external_id"))
    source: str = Field("", max_length=200)

    _norm_tags = field_validator("tags", mode="before")(classmethod(lambda cls, v: _tags(v)))
    _norm_id = field_validator("external_id", mode="before")(classmethod(lambda cls, v: _ext_id(v)))


def _messages(value: Any) -> list[dict[str, str]]:
    return messages_normalize(value)


class PromptRow(_Row):
    prompt: list[dict[str, str]] = Field(
        validation_alias=AliasChoices("prompt", "messages", "conversation", "input", "text")
    )
    _norm_prompt = field_validator("prompt", mode="before")(classmethod(lambda cls, v: _messages(v)))


class _SampleFields(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    sampling_params: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    prompt_tokens: int | None = Field(None, ge=0)
    completion_tokens: int | None = Field(None, ge=0)
    latency_ms: int | None = Field(None, ge=0)
    finish_reason: str = Field("", max_length=40)


class SampleRow(_SampleFields):
    prompt_id: int | None = None
    prompt_external_id: str | None = None
    prompt_hash: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    prompt: list[dict[str, str]] | None = Field(None, validation_alias=AliasChoices("prompt", "messages"))
    model: str = Field(validation_alias=AliasChoices("model", "model_version"), min_length=1, max_length=200)
    text: str = Field(validation_alias=AliasChoices("text", "response", "completion", "output"), min_length=1)
    tags: list[str] = Field(default_factory=list)

    _norm_prompt = field_validator("prompt", mode="before")(
        classmethod(lambda cls, v: None if v is None else _messages(v))
    )
    _norm_tags = field_validator("tags", mode="before")(classmethod(lambda cls, v: _tags(v)))

    @model_validator(mode="after")
    def _one_reference(self) -> SampleRow:
        given = [
            n for n in ("prompt_id", "prompt_external_id", "prompt_hash", "prompt") if getattr(self, n) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one prompt reference: prompt_id, prompt_external_id, prompt_hash or prompt"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class JudgmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    annotator: str = Field(min_length=1, max_length=140)
    preferred: Preference
    strength: Strength | None = None
    safety: Safety | None = None
    rationale: str = ""
    time_spent_ms: int | None = Field(None, ge=0)

    _p = field_validator("preferred", mode="before")(classmethod(lambda cls, v: parse_preference(v)))
    _s = field_validator("strength", mode="before")(
        classmethod(lambda cls, v: None if v in (None, "") else parse_strength(v))
    )
    _f = field_validator("safety", mode="before")(
        classmethod(lambda cls, v: None if v in (None, "") else parse_safety(v))
    )

    @model_validator(mode="after")
    def _strength_only_for_preference(self) -> JudgmentIn:
        if self.strength is not None and self.preferred not in (Preference.A, Preference.B):
            raise ValueError(f"a strength goes with a preference for A or B, not with {self.preferred.value!r}")
        return self


class PairRow(_Row):
    prompt: list[dict[str, str]] = Field(
        validation_alias=AliasChoices("prompt", "input", "messages", "conversation", "question")
    )
    response_a: str = Field(
        validation_alias=AliasChoices("response_a", "output_1", "answer_a", "completion_a"), min_length=1
    )
    response_b: str = Field(
        validation_alias=AliasChoices("response_b", "output_2", "answer_b", "completion_b"), min_length=1
    )
    model_a: str | None = Field(None, min_length=1, max_length=200)
    model_b: str | None = Field(None, min_length=1, max_length=200)
    strength: Strength | None = None
    labels: dict[str, Preference] = Field(default_factory=dict)
    judgments: list[JudgmentIn] = Field(default_factory=list)
    gold: Preference | None = None

    _norm_prompt = field_validator("prompt", mode="before")(classmethod(lambda cls, v: _messages(v)))
    _s = field_validator("strength", mode="before")(
        classmethod(lambda cls, v: None if v in (None, "") else parse_strength(v))
    )
    _g = field_validator("gold", mode="before")(
        classmethod(lambda cls, v: None if v in (None, "") else parse_preference(v))
    )

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> dict[str, Preference]:
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise ValueError("labels must be an object {annotator: label}")
        return {str(k): parse_preference(v) for k, v in value.items()}


_ROW_MODELS: dict[ImportKind, type[BaseModel]] = {
    ImportKind.PROMPTS: PromptRow,
    ImportKind.SAMPLES: SampleRow,
    ImportKind.PAIRS: PairRow,
}


def _pydantic_errors(line: int, exc: ValidationError) -> list[RowError]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "is required"
        errors.append(RowError(line, loc, message))
    return errors


# --- Writing -------------------------------------------------------------------------


@dataclass
class _Valid:
    line: int
    row: Any
    labels: list[JudgmentIn] = field(default_factory=list)


class _Importer:
    def __init__(self, options: ImportOptions, report: ImportReport):
        self.o = options
        self.report = report
        self.project = options.project
        self._versions: dict[str, int] = {}
        self._annotators: dict[str, int] = {}
        terms = [t for t in (self.project.identity_terms or []) if t.strip()]
        # Case-sensitive whole words: names are written as names ("Llama", "ChatGPT");
        # ignoring case would hold back ordinary words such as Spanish "llama" (calls).
        self._identity = (
            re.compile(r"\b(" + "|".join(re.escape(t.strip()) for t in terms) + r")\b") if terms else None
        )
        self.round = options.round
        self.now = timezone.now()

    # helpers
    def version_id(self, name: str) -> int:
        if name not in self._versions:
            self._versions[name] = model_version_get_or_create(name=name).pk
        return self._versions[name]

    def annotator_id(self, name: str) -> int:
        if name not in self._annotators:
            self._annotators[name] = external_annotator_get_or_create(name=name).pk
        return self._annotators[name]

    def flagged(self, text: str) -> bool:
        return bool(self._identity and self._identity.search(text))

    def error(self, line: int, field_name: str, message: str) -> None:
        self.report.error_count += 1
        if len(self.report.errors) < self.o.max_errors:
            self.report.errors.append(RowError(line, field_name, message))

    # prompts ----------------------------------------------------------------------
    def resolve_prompts(self, items: list[tuple[list[dict[str, str]], list[str], str, str]]) -> list[int]:
        """Store the prompts that are new and return the id of each item's prompt."""
        hashes = [messages_hash(m) for m, *_ in items]
        cond, param = in_values("content_hash", set(hashes))
        existing: dict[str, tuple[int, list[str]]] = {
            h: (pk, _json(tags))
            for h, pk, tags in fetch(
                f"SELECT content_hash, id, tags FROM annotation_prompt WHERE project_id = %s AND {cond}",
                [self.project.pk, param],
            )
        }
        new_rows: dict[str, list] = {}
        tag_updates: dict[int, list[str]] = {}
        for (messages, tags, external_id, source), h in zip(items, hashes):
            if h in existing:
                pk, old_tags = existing[h]
                merged = old_tags + [t for t in tags if t not in old_tags]
                if merged != old_tags:
                    existing[h] = (pk, merged)
                    tag_updates[pk] = merged
                self.report.add("existing", "prompts")
            elif h in new_rows:
                row = new_rows[h]
                row[2] = row[2] + [t for t in tags if t not in row[2]]
                self.report.add("existing", "prompts")
            else:
                new_rows[h] = [
                    self.project.pk, messages, tags, source or self.o.source, external_id, h,
                    messages_turns(messages), self.now,
                ]
        if new_rows:
            ids = allocate_ids(Prompt, len(new_rows))
            rows = []
            for pk, (h, row) in zip(ids, new_rows.items()):
                existing[h] = (pk, row[2])
                rows.append((pk, *row))
            insert_rows(
                Prompt,
                ["id", "project_id", "messages", "tags", "source", "external_id", "content_hash", "turns", "created_at"],
                rows,
            )
            # A prompt created just now has no samples yet: later lookups skip it.
            self._fresh_prompts = set(ids)
            self.report.add("created", "prompts", len(rows))
        else:
            self._fresh_prompts = set()
        for pk, tags in tag_updates.items():
            Prompt.objects.filter(pk=pk).update(tags=tags)
        return [existing[h][0] for h in hashes]

    # samples ----------------------------------------------------------------------
    def resolve_samples(self, items: list[tuple[int, int, str, dict[str, Any]]]) -> list[int | None]:
        """items: (prompt_id, version_id, text, extra columns). Returns sample ids (None = refused)."""
        keys = [(p, v, text_hash(t)) for p, v, t, _ in items]
        fresh = self._fresh_prompts
        old = [k for k in keys if k[0] not in fresh]
        found: dict[tuple[int, int, str], int] = {}
        if old:
            cond_p, param_p = in_values("prompt_id", {k[0] for k in old})
            cond_h, param_h = in_values("text_hash", {k[2] for k in old})
            found = {
                (p, v, h): pk
                for p, v, h, pk in fetch(
                    f"SELECT prompt_id, model_version_id, text_hash, id FROM annotation_sample "
                    f"WHERE {cond_p} AND {cond_h}",
                    [param_p, param_h],
                )
            }
        seeded = {(p, v, extra["seed"]) for (p, v, _, extra) in items if extra.get("seed") is not None and p not in fresh}
        taken_seeds: set[tuple[int, int, int]] = set()
        if seeded:
            cond_p, param_p = in_values("prompt_id", {s[0] for s in seeded})
            cond_s, param_s = in_values("seed", {s[2] for s in seeded})
            taken_seeds = set(
                fetch(
                    f"SELECT prompt_id, model_version_id, seed FROM annotation_sample WHERE {cond_p} AND {cond_s}",
                    [param_p, param_s],
                )
            )
        new: dict[tuple[int, int, str], tuple | None] = {}
        for (p, v, text, extra), key in zip(items, keys):
            if key in found or key in new:
                self.report.add("existing", "samples")
                continue
            seed = extra.get("seed")
            if seed is not None:
                if (p, v, seed) in taken_seeds:
                    new[key] = None
                    continue
                taken_seeds.add((p, v, seed))
            new[key] = (
                p, v, text, key[2], extra.get("sampling_params") or {}, seed, extra.get("prompt_tokens"),
                extra.get("completion_tokens"), extra.get("latency_ms"), extra.get("finish_reason") or "",
                self.flagged(text), False, self.now,
            )
        refused = {k for k, row in new.items() if row is None}
        rows = [(k, row) for k, row in new.items() if row is not None]
        self._fresh_samples: set[int] = set()
        if rows:
            ids = allocate_ids(Sample, len(rows))
            insert_rows(
                Sample,
                ["id", "prompt_id", "model_version_id", "text", "text_hash", "sampling_params", "seed",
                 "prompt_tokens", "completion_tokens", "latency_ms", "finish_reason", "identity_flagged",
                 "identity_released", "created_at"],
                [(pk, *row) for pk, (_, row) in zip(ids, rows)],
            )
            for pk, (k, _) in zip(ids, rows):
                found[k] = pk
            self._fresh_samples = set(ids)
            self.report.add("created", "samples", len(rows))
            flagged = sum(1 for _, row in rows if row[10])
            self.report.add("created", "identity_flagged_samples", flagged)
        return [None if k in refused else found[k] for k in keys]

    # batches ----------------------------------------------------------------------
    def write(self, batch: list[_Valid]) -> None:
        # "Fresh" rows were created by this batch, so nothing can reference them yet.
        self._fresh_prompts: set[int] = set()
        self._fresh_samples = set()
        if self.o.kind == ImportKind.PROMPTS:
            self.resolve_prompts(
                [(v.row.prompt, _merge_tags(v.row.tags, self.o.extra_tags), v.row.external_id, v.row.source)
                 for v in batch]
            )
        elif self.o.kind == ImportKind.SAMPLES:
            self.write_samples(batch)
        else:
            self.write_pairs(batch)

    def write_samples(self, batch: list[_Valid]) -> None:
        by_id = {r.row.prompt_id for r in batch if r.row.prompt_id is not None}
        by_ext = {r.row.prompt_external_id for r in batch if r.row.prompt_external_id is not None}
        by_hash = {r.row.prompt_hash for r in batch if r.row.prompt_hash is not None}
        prompts = Prompt.objects.filter(project=self.project)
        known_ids = set(prompts.filter(id__in=by_id).values_list("id", flat=True)) if by_id else set()
        ext_map: dict[str, list[int]] = {}
        if by_ext:
            for ext, pk in prompts.filter(external_id__in=by_ext).values_list("external_id", "id"):
                ext_map.setdefault(ext, []).append(pk)
        hash_map = dict(prompts.filter(content_hash__in=by_hash).values_list("content_hash", "id")) if by_hash else {}
        inline = [r for r in batch if r.row.prompt is not None]
        inline_ids = (
            self.resolve_prompts([(r.row.prompt, _merge_tags(r.row.tags, self.o.extra_tags), "", "") for r in inline])
            if inline
            else []
        )
        inline_by_line = {r.line: pk for r, pk in zip(inline, inline_ids)}
        items, lines = [], []
        for r in batch:
            row = r.row
            if row.prompt is not None:
                prompt_id = inline_by_line[r.line]
            elif row.prompt_id is not None:
                if row.prompt_id not in known_ids:
                    self.error(r.line, "prompt_id", f"no prompt {row.prompt_id} in project {self.project.slug!r}")
                    continue
                prompt_id = row.prompt_id
            elif row.prompt_external_id is not None:
                matches = ext_map.get(row.prompt_external_id, [])
                if len(matches) != 1:
                    why = "no prompt has" if not matches else f"{len(matches)} prompts have"
                    self.error(r.line, "prompt_external_id", f"{why} external id {row.prompt_external_id!r}")
                    continue
                prompt_id = matches[0]
            else:
                if row.prompt_hash not in hash_map:
                    self.error(r.line, "prompt_hash", "no prompt in this project has that content hash")
                    continue
                prompt_id = hash_map[row.prompt_hash]
            items.append((prompt_id, self.version_id(row.model), row.text, row.model_dump(include=_EXTRA_SAMPLE)))
            lines.append(r.line)
        ids = self.resolve_samples(items) if items else []
        for line, (_, _, _, extra), pk in zip(lines, items, ids):
            if pk is None:
                self.error(line, "seed", f"another answer with seed {extra['seed']} exists for this prompt and model")

    def write_pairs(self, batch: list[_Valid]) -> None:
        round_ = self.ensure_round()
        prompt_ids = self.resolve_prompts(
            [(v.row.prompt, _merge_tags(v.row.tags, self.o.extra_tags), v.row.external_id, v.row.source)
             for v in batch]
        )
        sample_items = []
        for v, pid in zip(batch, prompt_ids):
            sample_items.append((pid, self.version_id(v.row.model_a or self.o.model_a), v.row.response_a, {}))
            sample_items.append((pid, self.version_id(v.row.model_b or self.o.model_b), v.row.response_b, {}))
        sample_ids = self.resolve_samples(sample_items)
        pairs = []
        for i, (v, pid) in enumerate(zip(batch, prompt_ids)):
            a, b = sample_ids[2 * i], sample_ids[2 * i + 1]
            if a == b:
                self.error(v.line, "response_b", "is the same answer from the same model as response_a")
                continue
            pairs.append((v, pid, a, b))
        existing: dict[tuple[int, int], list[int]] = {}
        old_a = {p[2] for p in pairs if p[2] not in self._fresh_samples and p[3] not in self._fresh_samples}
        if old_a:
            cond, param = in_values("sample_a_id", old_a)
            existing = {
                (a, b): [pk, count]
                for a, b, pk, count in fetch(
                    "SELECT sample_a_id, sample_b_id, id, judgment_count FROM annotation_comparison "
                    f"WHERE round_id = %s AND {cond}",
                    [round_.pk, param],
                )
            }
        new: dict[tuple[int, int], list] = {}
        for v, pid, a, b in pairs:
            if (a, b) in existing or (a, b) in new:
                self.report.add("existing", "comparisons")
                continue
            gold = v.row.gold.value if v.row.gold else ""
            new[(a, b)] = [round_.pk, pid, a, b, self.project.overlap, 0, 0, bool(gold), gold, self.now]
        if new:
            ids = allocate_ids(Comparison, len(new))
            for pk, (key, row) in zip(ids, new.items()):
                row.insert(0, pk)
            self.report.add("created", "comparisons", len(new))
        comparison_of = {key: row[0] for key, row in new.items()} | {k: v[0] for k, v in existing.items()}
        # Labels -> judgments by outside annotators, skipping any this annotator already gave.
        wanted: dict[tuple[int, int], tuple] = {}
        for v, _pid, a, b in pairs:
            cid = comparison_of[(a, b)]
            for j in v.labels:
                key = (cid, self.annotator_id(j.annotator))
                if key not in wanted:
                    wanted[key] = (
                        j.preferred.value, j.strength.value if j.strength else "", j.safety.value if j.safety else "",
                        j.time_spent_ms, j.rationale,
                    )
        if wanted:
            already: set[tuple[int, int]] = set()
            old_cids = {k[0] for k in wanted} - {row[0] for row in new.values()}
            if old_cids:
                cond, param = in_values("comparison_id", old_cids)
                already = set(fetch(f"SELECT comparison_id, annotator_id FROM annotation_judgment WHERE {cond}", [param]))
            added_to_existing: dict[int, int] = {}
            rows = []
            new_ids = {row[0]: row for row in new.values()}
            for (cid, uid), (pref, strength, safety, spent, rationale) in wanted.items():
                if (cid, uid) in already:
                    self.report.add("existing", "judgments")
                    continue
                rows.append((cid, uid, pref, strength, safety, "", spent, rationale, JudgmentSource.IMPORT, self.now))
                if cid in new_ids:
                    new_ids[cid][6] += 1  # judgment_count
                    new_ids[cid][7] += 1  # taken: an imported judgment holds a slot
                else:
                    added_to_existing[cid] = added_to_existing.get(cid, 0) + 1
        else:
            rows, added_to_existing = [], {}
        if new:
            insert_rows(
                Comparison,
                ["id", "round_id", "prompt_id", "sample_a_id", "sample_b_id", "required_judgments",
                 "judgment_count", "taken", "is_gold", "gold_preferred", "created_at"],
                list(new.values()),
            )
        if rows:
            insert_rows(
                Judgment,
                ["comparison_id", "annotator_id", "preferred", "strength", "safety", "left", "time_spent_ms",
                 "rationale", "source", "created_at"],
                rows,
            )
            self.report.add("created", "judgments", len(rows))
        for cid, n in added_to_existing.items():
            Comparison.objects.filter(pk=cid).update(judgment_count=F("judgment_count") + n, taken=F("taken") + n)

    def ensure_round(self) -> Round:
        if self.round is None:
            # Re-importing the same source into the same project goes to the same round,
            # so a repeated import finds its comparisons instead of duplicating them.
            name = f"Imported pairs{': ' + self.o.source if self.o.source else ''}"
            self.round = Round.objects.filter(
                project=self.project, pairing=PairingStrategy.IMPORTED, name=name
            ).order_by("id").first()
        if self.round is None:
            self.round = round_create(
                project=self.project,
                baseline=model_version_get_or_create(name=self.o.model_a),
                candidate=model_version_get_or_create(name=self.o.model_b),
                pairing=PairingStrategy.IMPORTED,
                name=name,
                status=RoundStatus.OPEN,
            )
            self.report.add("created", "rounds")
        self.report.round_id = self.round.pk
        return self.round


_EXTRA_SAMPLE = {"sampling_params", "seed", "prompt_tokens", "completion_tokens", "latency_ms", "finish_reason"}


def _json(value: Any) -> Any:
    # SQLite hands JSON columns back as text from raw queries; PostgreSQL as objects.
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def _merge_tags(tags: list[str], extra: tuple[str, ...]) -> list[str]:
    return tags + [t for t in extra if t not in tags] if extra else tags


def _labels_from_record(record: dict[str, Any], row: PairRow, options: ImportOptions) -> list[JudgmentIn]:
    """Collect a pair's existing labels: label columns, a labels object, a judgments list."""
    found: list[JudgmentIn] = []
    default_annotator = options.source or "import"
    for column in options.label_columns:
        value = record.get(column)
        if value in (None, ""):
            continue
        preferred = parse_preference(value)
        name = default_annotator if len(options.label_columns) == 1 else f"{default_annotator}:{column}"
        strength = row.strength if preferred in (Preference.A, Preference.B) else None
        found.append(JudgmentIn(annotator=name, preferred=preferred, strength=strength))
    for annotator, preferred in row.labels.items():
        found.append(JudgmentIn(annotator=f"{default_annotator}:{annotator}", preferred=preferred))
    for j in row.judgments:
        found.append(j.model_copy(update={"annotator": f"{default_annotator}:{j.annotator}"}))
    return found


_KNOWN_FIELDS: dict[ImportKind, set[str]] = {}


def _known_fields(kind: ImportKind, options: ImportOptions) -> set[str]:
    if kind not in _KNOWN_FIELDS:
        names: set[str] = set()
        for name, info in _ROW_MODELS[kind].model_fields.items():
            names.add(name)
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):
                names.update(str(c) for c in alias.choices)
        _KNOWN_FIELDS[kind] = names
    known = _KNOWN_FIELDS[kind]
    return known | set(options.label_columns) if kind == ImportKind.PAIRS else known


def import_run(*, stream: IO[bytes], filename: str, options: ImportOptions) -> ImportReport:
    """Validate and import one file. Returns a report; raises ImportFailed only for bad options."""
    started = time.perf_counter()
    report = ImportReport(kind=options.kind.value)
    if options.round is not None and options.round.project_id != options.project.pk:
        raise ImportFailed(f"round {options.round.pk} belongs to another project")
    if options.kind == ImportKind.PROMPTS and options.round is not None:
        raise ImportFailed("prompts are imported into a project, not a round")
    head = b""
    if options.file_format is None and hasattr(stream, "seek"):
        head = stream.read(64)
        stream.seek(0)
    file_format = options.file_format or detect_format(filename, head)
    row_model = _ROW_MODELS[options.kind]
    known = _known_fields(options.kind, options)
    batch_size, max_errors = options.batch_size, options.max_errors
    try:
        with transaction.atomic():
            constraints_immediate()
            importer = _Importer(options, report)
            batch: list[_Valid] = []
            for line, record in iter_records(stream, file_format):
                report.records += 1
                if isinstance(record, _Broken):
                    importer.error(line, "", record.message)
                    if record.fatal:
                        break
                    continue
                if not isinstance(record, dict):
                    importer.error(line, "", f"expected an object, found {type(record).__name__}")
                    continue
                try:
                    row = row_model.model_validate(record)
                    labels = _labels_from_record(record, row, options) if options.kind == ImportKind.PAIRS else []
                except ValidationError as exc:
                    for err in _pydantic_errors(line, exc):
                        importer.error(err.line, err.field, err.message)
                    continue
                except ValueError as exc:
                    importer.error(line, "label", str(exc))
                    continue
                unknown = record.keys() - known
                if unknown:
                    report.ignored_fields.update(unknown)
                report.valid += 1
                # Lines are written even after an error (and rolled back at the end) so
                # that references to unknown prompts or taken seeds are reported too;
                # past the error limit only the structure is still checked.
                if report.error_count < max_errors:
                    batch.append(_Valid(line, row, labels))
                    if len(batch) >= batch_size:
                        importer.write(batch)
                        batch = []
            if batch and report.error_count < max_errors:
                importer.write(batch)
            if options.kind == ImportKind.SAMPLES and options.round is not None and report.error_count == 0:
                report.add("created", "comparisons", round_build_comparisons(round_=options.round))
            if report.error_count and not options.skip_invalid:
                transaction.set_rollback(True)
            else:
                report.committed = True
    except ImportFailed as exc:
        report.error_count += 1
        report.errors.append(RowError(0, "", str(exc)))
        report.committed = False
    except IntegrityError as exc:
        report.error_count += 1
        report.errors.append(
            RowError(0, "", f"the database refused the import (a concurrent import of the same data?): {exc}")
        )
        report.committed = False
    except DatabaseError:
        report.committed = False
        raise
    if report.committed and sum(report.created.values()) >= ANALYZE_AFTER_ROWS:
        analyze([Prompt, Sample, Comparison, Judgment])
    if not report.committed:
        report.created = {}
        if options.round is None:
            report.round_id = None
    report.seconds = time.perf_counter() - started
    return report
