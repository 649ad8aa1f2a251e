"""The shapes of import records: one pydantic model per kind, the words accepted for
labels, strengths and safety labels, and the fields each kind knows.

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
  1/2, A/B, tie, both_bad, cant_judge ..., one outside annotator per column), a
  ``labels`` object {annotator: label}, or a ``judgments`` list of
  {annotator, preferred, strength, safety, rationale}; optional ``strength``,
  ``gold`` (the known answer, making the pair a gold item), ``tags``, ``id``.
  The LLMBar files (input, output_1, output_2, label) import as they are.

What a label may be (strength only with a side, the limits) is checked by the one
judgment path, ``annotation.judging.verdict_check``, when the label is written.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from annotation.models import Preference, Safety, Strength
from core.limits import MAX_ID
from core.text import messages_normalize
from imports.report import ImportKind, ImportOptions

_PREFERENCE_WORDS = {
    "1": Preference.A,
    "a": Preference.A,
    "model_a": Preference.A,
    "output_1": Preference.A,
    "response_a": Preference.A,
    "left": Preference.A,
    "2": Preference.B,
    "b": Preference.B,
    "model_b": Preference.B,
    "output_2": Preference.B,
    "response_b": Preference.B,
    "right": Preference.B,
    "tie": Preference.TIE,
    "0": Preference.TIE,
    "equal": Preference.TIE,
    "both_bad": Preference.BOTH_BAD,
    "both bad": Preference.BOTH_BAD,
    "bothbad": Preference.BOTH_BAD,
    "tie (bothbad)": Preference.BOTH_BAD,
    "not_rankable": Preference.BOTH_BAD,
    "cant_judge": Preference.CANT_JUDGE,
    "can't judge": Preference.CANT_JUDGE,
    "unsure": Preference.CANT_JUDGE,
    "skip": Preference.CANT_JUDGE,
}
_STRENGTH_WORDS = {
    "significantly": Strength.SIGNIFICANTLY,
    "significantly better": Strength.SIGNIFICANTLY,
    "much better": Strength.SIGNIFICANTLY,
    "3": Strength.SIGNIFICANTLY,
    "better": Strength.BETTER,
    "2": Strength.BETTER,
    "slightly": Strength.SLIGHTLY,
    "slightly better": Strength.SLIGHTLY,
    "1": Strength.SLIGHTLY,
    "negligibly": Strength.NEGLIGIBLY,
    "negligibly better": Strength.NEGLIGIBLY,
    "marginally better": Strength.NEGLIGIBLY,
    "negligibly better/unsure": Strength.NEGLIGIBLY,
    "unsure": Strength.NEGLIGIBLY,
    "0": Strength.NEGLIGIBLY,
}
_SAFETY_WORDS = {s.value: s for s in Safety} | {s.label.lower(): s for s in Safety}

# What the columns hold: counts are PostgreSQL integers, seeds and ids 64-bit; a larger
# number is the record's error, not the database's.
MAX_COUNT = 2**31 - 1


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
    seed: int | None = Field(None, ge=-MAX_ID - 1, le=MAX_ID)
    prompt_tokens: int | None = Field(None, ge=0, le=MAX_COUNT)
    completion_tokens: int | None = Field(None, ge=0, le=MAX_COUNT)
    latency_ms: int | None = Field(None, ge=0, le=MAX_COUNT)
    finish_reason: str = Field("", max_length=40)


class SampleRow(_SampleFields):
    prompt_id: int | None = Field(None, ge=1, le=MAX_ID)
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
    time_spent_ms: int | None = None

    _p = field_validator("preferred", mode="before")(classmethod(lambda cls, v: parse_preference(v)))
    _s = field_validator("strength", mode="before")(
        classmethod(lambda cls, v: None if v in (None, "") else parse_strength(v))
    )
    _f = field_validator("safety", mode="before")(
        classmethod(lambda cls, v: None if v in (None, "") else parse_safety(v))
    )


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


ROW_MODELS: dict[ImportKind, type[BaseModel]] = {
    ImportKind.PROMPTS: PromptRow,
    ImportKind.SAMPLES: SampleRow,
    ImportKind.PAIRS: PairRow,
}


def pydantic_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """(field, message) for each problem pydantic found in a record."""
    errors = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "is required"
        errors.append((loc, message))
    return errors


def labels_from_record(record: dict[str, Any], row: PairRow, options: ImportOptions) -> list[JudgmentIn]:
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
    found.extend(
        JudgmentIn(annotator=f"{default_annotator}:{annotator}", preferred=preferred)
        for annotator, preferred in row.labels.items()
    )
    found.extend(j.model_copy(update={"annotator": f"{default_annotator}:{j.annotator}"}) for j in row.judgments)
    return found


def labels_in_record(record: dict[str, Any], options: ImportOptions) -> int:
    """How many labels a record holds, counted on the record as read (also when it is
    refused): filled label columns, entries of a ``labels`` object, a ``judgments`` list."""
    count = sum(1 for column in options.label_columns if record.get(column) not in (None, ""))
    for name in ("labels", "judgments"):
        value = record.get(name)
        if isinstance(value, (dict, list)):
            count += len(value)
    return count


_KNOWN_FIELDS: dict[ImportKind, set[str]] = {}


def known_fields(kind: ImportKind, options: ImportOptions) -> set[str]:
    if kind not in _KNOWN_FIELDS:
        names: set[str] = set()
        for name, info in ROW_MODELS[kind].model_fields.items():
            names.add(name)
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):
                names.update(str(c) for c in alias.choices)
        _KNOWN_FIELDS[kind] = names
    known = _KNOWN_FIELDS[kind]
    return known | set(options.label_columns) if kind == ImportKind.PAIRS else known
