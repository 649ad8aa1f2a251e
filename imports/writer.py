"""Writing validated import records in batches: prompts (stored once per content hash),
samples (once per prompt, version and text), comparisons and the labels that come with
them, which become judgments of named outside annotators through the one judgment path
(``annotation.judging``). Everything runs in the import's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from django.utils import timezone

from accounts.services import external_annotator_get_or_create
from annotation.assignment import AssignmentRefused
from annotation.bulk import allocate_ids, fetch, in_values, insert_rows
from annotation.judging import ImportedJudgment, Verdict, judgments_insert_imported, verdict_check
from annotation.models import Comparison, PairingStrategy, Prompt, Round, RoundStatus, Sample
from annotation.services import round_create
from core.text import identity_matcher, messages_hash, messages_turns, text_hash
from imports.readers import Where
from imports.report import ImportKind, ImportOptions, ImportReport, RowError
from imports.rows import JudgmentIn
from models_service.services import model_version_get_or_create


@dataclass
class Valid:
    """A record that passed validation, with where it came from."""

    line: Where
    row: Any
    labels: list[JudgmentIn] = field(default_factory=list)


class Importer:
    def __init__(self, options: ImportOptions, report: ImportReport):
        self.o = options
        self.report = report
        self.project = options.project
        self._versions: dict[str, int] = {}
        self._annotators: dict[str, int] = {}
        self._identity = identity_matcher(self.project.identity_terms)
        self.round = options.round
        self.now = timezone.now()
        # Rows created by the batch being written: nothing can reference them yet.
        self._fresh_prompts: set[int] = set()
        self._fresh_samples: set[int] = set()
        # Answers of the batch that name a model and are not released: their pairs are held.
        self._held_samples: set[int] = set()
        # Bare labels repeat (a file holds a handful of distinct ones): each is checked once.
        self._checked: dict[Verdict, Verdict | AssignmentRefused] = {}

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
        return self._identity.matches(text)

    def error(self, where: Where, field_name: str, message: str) -> None:
        self.report.error_count += 1
        if len(self.report.errors) < self.o.max_errors:
            self.report.errors.append(RowError(where.line, field_name, message, item=where.item))

    def labels_lost(self, where: Where, count: int) -> None:
        """Labels of the record at ``where`` that will not be stored (its errors say why)."""
        self.report.labels_lost(line=where.line, item=where.item, count=count, max_places=self.o.max_errors)

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
                    self.project.pk,
                    messages,
                    tags,
                    source or self.o.source,
                    external_id,
                    h,
                    messages_turns(messages),
                    self.now,
                ]
        if new_rows:
            ids = allocate_ids(Prompt, len(new_rows))
            rows = []
            for pk, (h, row) in zip(ids, new_rows.items()):
                existing[h] = (pk, row[2])
                rows.append((pk, *row))
            insert_rows(
                Prompt,
                [
                    "id",
                    "project_id",
                    "messages",
                    "tags",
                    "source",
                    "external_id",
                    "content_hash",
                    "turns",
                    "created_at",
                ],
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
            for p, v, h, pk, held in fetch(
                "SELECT prompt_id, model_version_id, text_hash, id, identity_flagged AND NOT identity_released "
                f"FROM annotation_sample WHERE {cond_p} AND {cond_h}",
                [param_p, param_h],
            ):
                found[(p, v, h)] = pk
                if held:
                    self._held_samples.add(pk)
        seeded = {
            (p, v, extra["seed"]) for (p, v, _, extra) in items if extra.get("seed") is not None and p not in fresh
        }
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
                p,
                v,
                text,
                key[2],
                extra.get("sampling_params") or {},
                seed,
                extra.get("prompt_tokens"),
                extra.get("completion_tokens"),
                extra.get("latency_ms"),
                extra.get("finish_reason") or "",
                self.flagged(text),
                False,
                self.now,
            )
        refused = {k for k, row in new.items() if row is None}
        rows = [(k, row) for k, row in new.items() if row is not None]
        self._fresh_samples = set()
        if rows:
            ids = allocate_ids(Sample, len(rows))
            insert_rows(
                Sample,
                [
                    "id",
                    "prompt_id",
                    "model_version_id",
                    "text",
                    "text_hash",
                    "sampling_params",
                    "seed",
                    "prompt_tokens",
                    "completion_tokens",
                    "latency_ms",
                    "finish_reason",
                    "identity_flagged",
                    "identity_released",
                    "created_at",
                ],
                [(pk, *row) for pk, (_, row) in zip(ids, rows)],
            )
            for pk, (k, row) in zip(ids, rows):
                found[k] = pk
                if row[10]:  # identity_flagged
                    self._held_samples.add(pk)
            self._fresh_samples = set(ids)
            self.report.add("created", "samples", len(rows))
            flagged = sum(1 for _, row in rows if row[10])
            self.report.add("created", "identity_flagged_samples", flagged)
        return [None if k in refused else found[k] for k in keys]

    # batches ----------------------------------------------------------------------
    def write(self, batch: list[Valid]) -> None:
        # "Fresh" rows were created by this batch, so nothing can reference them yet.
        self._fresh_prompts = set()
        self._fresh_samples = set()
        self._held_samples = set()
        if self.o.kind == ImportKind.PROMPTS:
            self.resolve_prompts(
                [
                    (v.row.prompt, merge_tags(v.row.tags, self.o.extra_tags), v.row.external_id, v.row.source)
                    for v in batch
                ]
            )
        elif self.o.kind == ImportKind.SAMPLES:
            self.write_samples(batch)
        else:
            self.write_pairs(batch)

    def write_samples(self, batch: list[Valid]) -> None:
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
            self.resolve_prompts([(r.row.prompt, merge_tags(r.row.tags, self.o.extra_tags), "", "") for r in inline])
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
            items.append((prompt_id, self.version_id(row.model), row.text, row.model_dump(include=EXTRA_SAMPLE)))
            lines.append(r.line)
        ids = self.resolve_samples(items) if items else []
        for line, (_, _, _, extra), sample_id in zip(lines, items, ids):
            if sample_id is None:
                self.error(line, "seed", f"another answer with seed {extra['seed']} exists for this prompt and model")

    def write_pairs(self, batch: list[Valid]) -> None:
        round_ = self.ensure_round()
        prompt_ids = self.resolve_prompts(
            [(v.row.prompt, merge_tags(v.row.tags, self.o.extra_tags), v.row.external_id, v.row.source) for v in batch]
        )
        sample_items: list[tuple[int, int, str, dict[str, Any]]] = []
        for v, pid in zip(batch, prompt_ids):
            sample_items.append((pid, self.version_id(v.row.model_a or self.o.model_a), v.row.response_a, {}))
            sample_items.append((pid, self.version_id(v.row.model_b or self.o.model_b), v.row.response_b, {}))
        sample_ids = self.resolve_samples(sample_items)
        pairs: list[tuple[Valid, int, int, int]] = []
        for i, (v, pid) in enumerate(zip(batch, prompt_ids)):
            a, b = sample_ids[2 * i], sample_ids[2 * i + 1]
            if a is None or b is None:  # samples without seeds are never refused; checked for the types
                self.error(v.line, "", "an answer could not be stored")
                self.labels_lost(v.line, len(v.labels))
                continue
            if a == b:
                self.error(v.line, "response_b", "is the same answer from the same model as response_a")
                self.labels_lost(v.line, len(v.labels))
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
            held = a in self._held_samples or b in self._held_samples
            new[(a, b)] = [round_.pk, pid, a, b, self.project.overlap, 0, 0, bool(gold), gold, held, self.now]
        if new:
            ids = allocate_ids(Comparison, len(new))
            for pk, row in zip(ids, new.values()):
                row.insert(0, pk)
            self.report.add("created", "comparisons", len(new))
        comparison_of = {key: row[0] for key, row in new.items()} | {k: v[0] for k, v in existing.items()}
        fresh = {row[0] for row in new.values()}
        labels = self.labels_to_store(pairs, comparison_of, fresh=fresh)
        if new:
            # A new comparison is written with its labels already counted (a judgment and
            # a slot each, as an annotator's): updating rows just written would write them twice.
            counts: dict[int, int] = {}
            for label in labels:
                if label.comparison_id in fresh:
                    counts[label.comparison_id] = counts.get(label.comparison_id, 0) + 1
            for row in new.values():
                row[6] = row[7] = counts.get(row[0], 0)  # judgment_count, taken
            insert_rows(
                Comparison,
                [
                    "id",
                    "round_id",
                    "prompt_id",
                    "sample_a_id",
                    "sample_b_id",
                    "required_judgments",
                    "judgment_count",
                    "taken",
                    "is_gold",
                    "gold_preferred",
                    "held",
                    "created_at",
                ],
                list(new.values()),
            )
            held_back = sum(1 for row in new.values() if row[10])
            if held_back:
                self.report.add("created", "comparisons_held_back", held_back)
        judgments_insert_imported(labels, now=self.now, counted=fresh)
        self.report.add("created", "judgments", len(labels))

    def label_check(self, verdict: Verdict) -> Verdict | AssignmentRefused:
        # Only bare labels are remembered: one with its own rationale or time is checked
        # afresh, so memory does not grow with the file.
        bare = not verdict.rationale and verdict.time_spent_ms is None
        if bare and verdict in self._checked:
            return self._checked[verdict]
        try:
            checked: Verdict | AssignmentRefused = verdict_check(verdict, self.project, imported=True)
        except AssignmentRefused as exc:
            checked = exc
        if bare:
            self._checked[verdict] = checked
        return checked

    def labels_to_store(
        self, pairs: list[tuple[Valid, int, int, int]], comparison_of: dict, *, fresh: set[int]
    ) -> list[ImportedJudgment]:
        """Labels -> judgments by outside annotators, each checked by the judgment service.

        One judgment per annotator and comparison: a label repeated as it is (the same
        file twice, or a line repeated) counts as already present; a label that differs
        from the one this annotator already gave (in this file or before) is an error on
        its line, so no label is dropped without a word."""
        wanted: dict[tuple[int, int], tuple[Verdict, Where]] = {}
        for v, _pid, a, b in pairs:
            cid = comparison_of[(a, b)]
            for label in v.labels:
                checked = self.label_check(
                    Verdict(
                        preferred=label.preferred.value,
                        strength=label.strength.value if label.strength else "",
                        safety=label.safety.value if label.safety else "",
                        rationale=label.rationale,
                        time_spent_ms=label.time_spent_ms,
                    )
                )
                if isinstance(checked, AssignmentRefused):
                    for name, messages in checked.message_dict.items():
                        self.error(v.line, "label" if name == "preferred" else f"label.{name}", " ".join(messages))
                    self.labels_lost(v.line, 1)
                    continue
                verdict = checked
                key = (cid, self.annotator_id(label.annotator))
                if key in wanted:
                    first, where = wanted[key]
                    if first == verdict:
                        self.report.add("existing", "judgments")
                    else:
                        self.error(
                            v.line,
                            "label",
                            f"annotator {label.annotator!r} already labelled this pair differently ({where}); "
                            "one judgment per annotator and pair is kept, so this label was not stored",
                        )
                        self.labels_lost(v.line, 1)
                    continue
                wanted[key] = (verdict, v.line)
        if not wanted:
            return []
        stored: dict[tuple[int, int], list[Any]] = {}
        old_cids = {cid for cid, _ in wanted} - fresh
        if old_cids:
            cond, param = in_values("comparison_id", old_cids)
            stored = {
                (cid, uid): rest
                for cid, uid, *rest in fetch(
                    f"SELECT comparison_id, annotator_id, preferred, strength, safety FROM annotation_judgment WHERE {cond}",
                    [param],
                )
            }
        rows = []
        for (cid, uid), (verdict, where) in wanted.items():
            if (cid, uid) in stored:
                if tuple(stored[(cid, uid)]) == (verdict.preferred, verdict.strength, verdict.safety):
                    self.report.add("existing", "judgments")
                else:
                    self.error(
                        where,
                        "label",
                        "this annotator's judgment of the pair is already stored with another verdict; "
                        "one judgment per annotator and pair is kept, so this label was not stored",
                    )
                    self.labels_lost(where, 1)
                continue
            rows.append(ImportedJudgment(comparison_id=cid, annotator_id=uid, verdict=verdict))
        return rows

    def ensure_round(self) -> Round:
        if self.round is None:
            # Re-importing the same source into the same project goes to the same round,
            # so a repeated import finds its comparisons instead of duplicating them.
            name = f"Imported pairs{': ' + self.o.source if self.o.source else ''}"
            self.round = (
                Round.objects.filter(project=self.project, pairing=PairingStrategy.IMPORTED, name=name)
                .order_by("id")
                .first()
            )
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


EXTRA_SAMPLE = {"sampling_params", "seed", "prompt_tokens", "completion_tokens", "latency_ms", "finish_reason"}


def _json(value: Any) -> Any:
    # SQLite hands JSON columns back as text from raw queries; PostgreSQL as objects.
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def merge_tags(tags: list[str], extra: tuple[str, ...]) -> list[str]:
    return tags + [t for t in extra if t not in tags] if extra else tags
