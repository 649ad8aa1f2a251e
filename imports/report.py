"""What an import was asked to do and what it did: options, kinds, errors, the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from annotation.models import Project, Round


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
    """One problem: where (a line of a JSONL or CSV file, or an item of a JSON array;
    neither for the file as a whole), which field, and what is wrong."""

    line: int | None
    field: str
    message: str
    item: int | None = None

    @property
    def where(self) -> str:
        return f"line {self.line}" if self.line else f"item {self.item}" if self.item else "file"

    def __str__(self) -> str:
        return f"{self.where}: {self.field}: {self.message}" if self.field else f"{self.where}: {self.message}"


@dataclass
class LabelsNotStored:
    """A record (a line, or an item of a JSON array) some of whose labels were not stored."""

    line: int | None
    item: int | None
    count: int

    @property
    def where(self) -> str:
        return f"line {self.line}" if self.line else f"item {self.item}" if self.item else "file"


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
    max_record_bytes: int = 0  # 0: settings.IMPORT_MAX_RECORD_BYTES

    def __post_init__(self) -> None:
        # Normalised here, once, for every caller (command, API, upload form).
        self.source = self.source.strip()
        self.label_columns = tuple(c.strip() for c in self.label_columns if c and c.strip()) or ("label",)
        self.extra_tags = tuple(dict.fromkeys(t.strip().lower() for t in self.extra_tags if t and t.strip()))
        self.batch_size = self.batch_size or settings.IMPORT_BATCH_SIZE
        self.max_errors = self.max_errors or settings.IMPORT_MAX_ERRORS
        self.max_record_bytes = self.max_record_bytes or settings.IMPORT_MAX_RECORD_BYTES


@dataclass
class ImportReport:
    """What an import did. Labels are accounted for one by one: of the ``labels_read``,
    each was stored (``created["judgments"]``), was there already
    (``existing["judgments"]``) or is counted in ``labels_not_stored``, with the places
    of the first ``IMPORT_MAX_ERRORS`` records that lost one in ``labels_not_stored_at``
    (the errors say why). Nothing committed: every label read is not stored. Labels of a
    record that could not be read at all (not JSON, too long) cannot be counted; its
    error names it."""

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
    labels_read: int = 0
    labels_not_stored: int = 0
    labels_not_stored_at: list[LabelsNotStored] = field(default_factory=list)
    _places: dict[tuple[int | None, int | None], LabelsNotStored] = field(default_factory=dict, repr=False)

    # How the counts read to people (the API keeps the keys).
    COUNT_LABELS = {
        "prompts": "prompts",
        "samples": "answers",
        "comparisons": "pairs",
        "judgments": "labels",
        "rounds": "rounds",
        "identity_flagged_samples": "answers naming a model (held for review)",
        "comparisons_held_back": "pairs held back (an answer names a model)",
    }

    def counts_for_people(self, bucket: str) -> list[tuple[str, int]]:
        counts = self.created if bucket == "created" else self.existing
        return [(self.COUNT_LABELS.get(name, name.replace("_", " ")), n) for name, n in counts.items()]

    @property
    def errors_in_file_order(self) -> list[RowError]:
        """The errors by line (or item), whole-file ones first: as a reader goes through the file."""
        return sorted(self.errors, key=lambda e: e.line or e.item or 0)

    def add(self, bucket: str, name: str, n: int = 1) -> None:
        target = self.created if bucket == "created" else self.existing
        if n:
            target[name] = target.get(name, 0) + n

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def labels_lost(self, *, line: int | None, item: int | None, count: int, max_places: int) -> None:
        """Count labels of one record that were not stored, and say where."""
        if count <= 0:
            return
        self.labels_not_stored += count
        place = self._places.get((line, item))
        if place is not None:
            place.count += count
        elif len(self.labels_not_stored_at) < max_places:
            place = self._places[(line, item)] = LabelsNotStored(line, item, count)
            self.labels_not_stored_at.append(place)

    @property
    def labels_not_stored_truncated(self) -> bool:
        """More labels were lost than at the places listed (the list is bounded)."""
        return self.labels_not_stored > sum(p.count for p in self.labels_not_stored_at) and bool(
            self.labels_not_stored_at
        )

    def label_places(self) -> str:
        """Where labels were not stored, for people: "line 3, line 9, …"."""
        places = ", ".join(p.where for p in self.labels_not_stored_at)
        return places + (", …" if self.labels_not_stored_truncated else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "committed": self.committed,
            "records": self.records,
            "valid": self.valid,
            "created": self.created,
            "existing": self.existing,
            "error_count": self.error_count,
            "errors": [{"line": e.line, "item": e.item, "field": e.field, "message": e.message} for e in self.errors],
            "errors_truncated": self.error_count > len(self.errors),
            "ignored_fields": sorted(self.ignored_fields),
            "round_id": self.round_id,
            "seconds": round(self.seconds, 3),
            "labels_read": self.labels_read,
            "labels_not_stored": self.labels_not_stored,
            "labels_not_stored_at": [
                {"line": p.line, "item": p.item, "count": p.count} for p in self.labels_not_stored_at
            ],
            "labels_not_stored_truncated": self.labels_not_stored_truncated,
        }

    def summary(self) -> str:
        state = "committed" if self.committed else "nothing written"
        parts = [f"{self.records} records, {self.valid} valid, {self.error_count} with errors ({state})"]
        if self.created:
            parts.append("created " + ", ".join(f"{v} {k}" for k, v in sorted(self.created.items())))
        if self.existing:
            parts.append("already present " + ", ".join(f"{v} {k}" for k, v in sorted(self.existing.items())))
        if self.labels_not_stored:
            where = f" ({self.label_places()})" if self.labels_not_stored_at else ""
            parts.append(f"{self.labels_not_stored} of {self.labels_read} labels not stored{where}")
        if self.ignored_fields:
            parts.append("ignored fields: " + ", ".join(sorted(self.ignored_fields)))
        return "; ".join(parts)
