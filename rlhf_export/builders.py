"""Row builders: one per export kind, from the judgments of one comparison to dataset rows.

Every builder sees the judgments of one comparison at a time (the stream is ordered by
comparison) and yields ``(split, row)`` pairs; a row is a dict whose keys follow the
kind's Arrow schema, in order. Nothing here reads the database or a clock: the same
judgments always give the same rows.

Formats follow TRL (``trl/docs/source/dataset_formats.md``): *standard* rows carry
plain strings (``prompt`` / ``chosen`` / ``rejected``, or ``prompt`` / ``completion``
for SFT); *conversational* rows carry message lists (``[{"role", "content"}]``).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import pyarrow as pa

from core.text import messages_hash
from rlhf_export.models import ExportKind, TextFormat
from rlhf_export.schemas import MARGINS, STRENGTH_RANK, ExportFilters, ExportOptions
from rlhf_export.selectors import (
    ANNOTATOR_ID,
    COMPARISON_ID,
    CREATED_AT,
    EDIT_BASE,
    EDIT_TEXT,
    HASH_A,
    HASH_B,
    IS_GOLD,
    J_ID,
    LEFT,
    MESSAGES,
    MODEL_A,
    MODEL_B,
    PREFERRED,
    PROMPT_HASH,
    PROMPT_ID,
    RATIONALE,
    ROUND,
    SAFETY,
    SAMPLE_A,
    SOURCE,
    STRENGTH,
    TAGS,
    TEXT_A,
    TEXT_B,
    TIME_MS,
    USERNAME,
)

MESSAGES_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
TAGS_TYPE = pa.list_(pa.string())
UNKNOWN_STRENGTH_RANK = len(STRENGTH_RANK)  # imported judgments may carry no strength

# --- Schemas -----------------------------------------------------------------------------


def schema_for(kind: str, text_format: str, options: ExportOptions) -> pa.Schema:
    text = MESSAGES_TYPE if text_format == TextFormat.CONVERSATIONAL else pa.string()
    if kind == ExportKind.RAW:
        return pa.schema(
            [
                ("id", pa.string()),
                ("judgment_id", pa.int64()),
                ("comparison_id", pa.int64()),
                ("round", pa.int64()),
                ("prompt_id", pa.int64()),
                ("prompt", text),
                ("response_a", pa.string()),
                ("response_b", pa.string()),
                ("model_a", pa.string()),
                ("model_b", pa.string()),
                ("preferred", pa.string()),
                ("strength", pa.string()),
                ("safety", pa.string()),
                ("left", pa.string()),
                ("annotator", pa.string()),
                ("annotator_id", pa.int64()),
                ("time_spent_ms", pa.int64()),
                ("rationale", pa.string()),
                ("source", pa.string()),
                ("created_at", pa.string()),
                ("edit", pa.string()),
                ("edit_base", pa.string()),
                ("is_gold", pa.bool_()),
                ("tags", TAGS_TYPE),
                ("annotators", pa.int64()),
                ("agreement", pa.float64()),
            ]
        )
    if kind == ExportKind.SFT:
        body = (
            [("prompt", pa.string()), ("completion", pa.string())]
            if text_format == TextFormat.STANDARD
            else [("messages", MESSAGES_TYPE)]
        )
        return pa.schema(
            [
                ("id", pa.string()),
                *body,
                ("round", pa.int64()),
                ("tags", TAGS_TYPE),
                ("comparison_id", pa.int64()),
                ("judgment_id", pa.int64()),
                ("preferred", pa.string()),
            ]
        )
    fields: list[tuple[str, pa.DataType]] = [
        ("id", pa.string()),
        ("prompt", text),
        ("chosen", text),
        ("rejected", text),
    ]
    if kind == ExportKind.REWARD_MODEL and options.margin != "none":
        fields.append(("margin", pa.float64()))
    fields += [
        ("strength", pa.string()),
        ("round", pa.int64()),
        ("tags", TAGS_TYPE),
        ("annotators", pa.int64()),
        ("agreement", pa.float64()),
        ("comparison_id", pa.int64()),
    ]
    if kind == ExportKind.LLAMA3:
        fields.append(("pair_type", pa.string()))
    return pa.schema(fields)


# --- Helpers -----------------------------------------------------------------------------

_LABELS = {"system": "System", "user": "Human", "assistant": "Assistant"}


def render_prompt(messages: list[dict]) -> str:
    """A conversation as one string (TRL's standard format).

    A single user turn is its text; anything longer is an HH-RLHF-style transcript
    ("Human: …\\n\\nAssistant: …") ending on "Assistant:", the answer's cue.
    """
    if len(messages) == 1 and messages[0].get("role") == "user":
        return messages[0].get("content", "")
    turns = [
        f"{_LABELS.get(m.get('role', ''), str(m.get('role', '')).title())}: {m.get('content', '')}" for m in messages
    ]
    return "\n\n".join(turns) + "\n\nAssistant:"


def split_key(messages: list[dict], prompt_hash: str) -> str:
    """What the train/test split hashes: the conversation's root - the messages up to its
    first user turn. A dialogue's later turns are prompts of their own (live mode, Llama 2's
    multi-turn collection) that repeat the earlier turns and answers; split by their own
    hash they would land in both splits, and a test row could contain a train row's chosen
    answer word for word. A single-turn prompt's root is itself (its content hash)."""
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if len(users) <= 1:
        return prompt_hash
    return messages_hash(messages[: users[0] + 1])


def split_of(prompt_hash: str, *, seed: str, test_fraction: float) -> str:
    """``test`` for a stable share of prompts: a pure function of the prompt's content hash."""
    if test_fraction <= 0:
        return "train"
    digest = hashlib.sha256(f"{seed}\x00{prompt_hash}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") < test_fraction * 2**64 else "train"


def _iso(value) -> str:
    if isinstance(value, str) and value.endswith("Z"):
        return value  # formatted by PostgreSQL already
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _lower_median_strength(strengths: list[str]) -> str:
    """The median strength of the winning voters, the weaker of the two middles."""
    ranked = sorted(strengths, key=lambda s: STRENGTH_RANK.get(s, UNKNOWN_STRENGTH_RANK))
    return ranked[len(ranked) // 2]


@dataclass(frozen=True)
class Outcome:
    """What a comparison (or one judgment) says: the preferred side and how sure."""

    preferred: str
    strength: str
    annotators: int
    agreement: float
    key: str  # row id stem: "c<comparison>" or "j<judgment>"
    judgments: tuple[tuple, ...]  # the judgments that voted for ``preferred``


@dataclass
class BuildContext:
    kind: str
    text_format: str
    filters: ExportFilters
    options: ExportOptions
    counts: Counter = field(default_factory=Counter)
    _seen: set[int] = field(default_factory=set)

    def is_duplicate(self, *parts: str) -> bool:
        if not self.filters.deduplicate:
            return False
        # 8 bytes of BLAKE2b per written row: ~60 bytes of memory per row in a set.
        key = int.from_bytes(hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest(), "big")
        if key in self._seen:
            self.counts["duplicates"] += 1
            return True
        self._seen.add(key)
        return False


# --- The builder -------------------------------------------------------------------------


class RowBuilder:
    """Turns the judgments of one comparison into rows of ``kind`` (see module doc)."""

    def __init__(self, ctx: BuildContext) -> None:
        self.ctx = ctx
        self.f = ctx.filters
        self.conversational = ctx.text_format == TextFormat.CONVERSATIONAL
        self.margins = MARGINS.get(ctx.options.margin) if ctx.kind == ExportKind.REWARD_MODEL else None
        self.min_rank = STRENGTH_RANK[self.f.min_strength] if self.f.min_strength else None
        self.tags = set(self.f.tags)

    # The entry point.
    def rows(self, group: list[tuple]) -> Iterator[tuple[str, dict]]:
        first = group[0]
        tags = orjson.loads(first[TAGS]) if first[TAGS] else []
        if self.tags and not self.tags.intersection(str(t).lower() for t in tags):
            self.ctx.counts["left_out_by_tag"] += len(group)
            return
        stored = orjson.loads(first[MESSAGES])
        split = split_of(
            split_key(stored, first[PROMPT_HASH]), seed=self.f.split_seed, test_fraction=self.f.test_fraction
        )
        messages = [{"role": m.get("role", ""), "content": m.get("content", "")} for m in stored]
        prompt = messages if self.conversational else render_prompt(messages)
        kind = self.ctx.kind
        if kind == ExportKind.RAW:
            yield from ((split, row) for row in self._raw(group, prompt, tags))
        elif kind == ExportKind.SFT:
            yield from ((split, row) for row in self._sft(group, messages, tags))
        else:
            yield from ((split, row) for row in self._pairs(group, prompt, tags))

    # --- Outcomes ------------------------------------------------------------------------

    def _outcomes(self, group: list[tuple]) -> list[Outcome]:
        votes = Counter(row[PREFERRED] for row in group)
        n = len(group)
        if self.f.aggregation == "none":
            return [
                Outcome(row[PREFERRED], row[STRENGTH] or "", n, votes[row[PREFERRED]] / n, f"j{row[J_ID]}", (row,))
                for row in group
            ]
        # Highest count first; equal counts can never be a strict majority, so the
        # tie-break by name only keeps the choice deterministic.
        winner, count = max(votes.items(), key=lambda kv: (kv[1], kv[0]))
        if 2 * count <= n:
            self.ctx.counts["no_majority"] += 1
            return []
        if self.f.disagreements == "drop" and count != n:
            self.ctx.counts["disagreement_dropped"] += 1
            return []
        voters = tuple(row for row in group if row[PREFERRED] == winner)
        strength = _lower_median_strength([row[STRENGTH] or "" for row in voters]) if winner in ("A", "B") else ""
        return [Outcome(winner, strength, n, count / n, f"c{group[0][COMPARISON_ID]}", voters)]

    def _strong_enough(self, strength: str) -> bool:
        if self.min_rank is None:
            return True
        if STRENGTH_RANK.get(strength, UNKNOWN_STRENGTH_RANK) <= self.min_rank:
            return True
        self.ctx.counts["below_min_strength"] += 1
        return False

    # --- Pair kinds: reward model, DPO, Llama 3 expansion ----------------------------------

    def _answer(self, text: str):
        return [{"role": "assistant", "content": text}] if self.conversational else text

    def _pair_row(self, *, key, prompt, chosen, rejected, strength, first, tags, outcome, pair_type=None) -> dict:
        row = {"id": key, "prompt": prompt, "chosen": self._answer(chosen), "rejected": self._answer(rejected)}
        if self.margins is not None:
            # An unknown strength (imported labels) gets no extra margin; never null,
            # which TRL's collator cannot take.
            row["margin"] = self.margins.get(strength, 0.0)
        row.update(
            strength=strength,
            round=int(first[ROUND]),
            tags=[str(t) for t in tags],
            annotators=outcome.annotators,
            agreement=outcome.agreement,
            comparison_id=int(first[COMPARISON_ID]),
        )
        if pair_type is not None:
            row["pair_type"] = pair_type
        return row

    def _pairs(self, group: list[tuple], prompt, tags) -> Iterator[dict]:
        first = group[0]
        texts = {"A": (first[TEXT_A], first[HASH_A]), "B": (first[TEXT_B], first[HASH_B])}
        llama3 = self.ctx.kind == ExportKind.LLAMA3
        phash = first[PROMPT_HASH]
        for outcome in self._outcomes(group):
            if outcome.preferred in ("A", "B"):
                other = "B" if outcome.preferred == "A" else "A"
                (chosen, chosen_hash), (rejected, rejected_hash) = texts[outcome.preferred], texts[other]
                if self._strong_enough(outcome.strength) and not self.ctx.is_duplicate(
                    phash, chosen_hash, rejected_hash
                ):
                    yield self._pair_row(
                        key=outcome.key + ("-cr" if llama3 else ""),
                        prompt=prompt,
                        chosen=chosen,
                        rejected=rejected,
                        strength=outcome.strength,
                        first=first,
                        tags=tags,
                        outcome=outcome,
                        pair_type="chosen>rejected" if llama3 else None,
                    )
            elif not llama3:
                self.ctx.counts[f"no_pair_{outcome.preferred}"] += 1
            if llama3:
                produced = False
                for row in self._edited_pairs(outcome, texts, prompt, tags, first):
                    produced = True
                    yield row
                if not produced and outcome.preferred not in ("A", "B"):
                    # A tie, can't-judge or unedited both-bad: no pair, counted for the card.
                    self.ctx.counts[f"no_pair_{outcome.preferred}"] += 1

    def _edited_pairs(self, outcome: Outcome, texts, prompt, tags, first) -> Iterator[dict]:
        """Llama 3 §4.2.1: edited > chosen > rejected gives the pairs edited>chosen and
        edited>rejected (chosen>rejected comes from the outcome). A rewrite of a 'both bad'
        pair beats both answers. Only rewrites by annotators who voted for the outcome."""
        phash = first[PROMPT_HASH]
        for row in outcome.judgments:
            edit = row[EDIT_TEXT]
            if not edit:
                continue
            edit_hash = _text_hash(edit)
            if outcome.preferred in ("A", "B"):
                other = "B" if outcome.preferred == "A" else "A"
                pairs = [
                    ("edited>chosen", texts[outcome.preferred], ""),
                    ("edited>rejected", texts[other], outcome.strength),
                ]
            elif outcome.preferred == "both_bad":
                pairs = [("edited>both_bad", texts["A"], ""), ("edited>both_bad", texts["B"], "")]
            else:
                continue
            for index, (pair_type, (rejected, rejected_hash), strength) in enumerate(pairs):
                if rejected_hash == edit_hash:
                    self.ctx.counts["edit_unchanged"] += 1
                    continue
                if self.ctx.is_duplicate(phash, edit_hash, rejected_hash):
                    continue
                yield self._pair_row(
                    key=f"j{row[J_ID]}-e{index}",
                    prompt=prompt,
                    chosen=edit,
                    rejected=rejected,
                    strength=strength,
                    first=first,
                    tags=tags,
                    outcome=outcome,
                    pair_type=pair_type,
                )

    # --- SFT from teacher-critic edits -----------------------------------------------------

    def _sft(self, group: list[tuple], messages: list[dict], tags) -> Iterator[dict]:
        first = group[0]
        for row in group:
            edit = row[EDIT_TEXT]
            if not edit:
                continue
            if self.ctx.is_duplicate(first[PROMPT_HASH], _text_hash(edit)):
                continue
            out: dict = {"id": f"j{row[J_ID]}"}
            if self.conversational:
                out["messages"] = [*messages, {"role": "assistant", "content": edit}]
            else:
                out["prompt"] = render_prompt(messages)
                out["completion"] = edit
            out.update(
                round=int(first[ROUND]),
                tags=[str(t) for t in tags],
                comparison_id=int(first[COMPARISON_ID]),
                judgment_id=int(row[J_ID]),
                preferred=row[PREFERRED],
            )
            yield out

    # --- Raw judgments ---------------------------------------------------------------------

    def _raw(self, group: list[tuple], prompt, tags) -> Iterator[dict]:
        votes = Counter(row[PREFERRED] for row in group)
        n = len(group)
        for row in group:
            edit_base = ""
            if row[EDIT_BASE] is not None:
                edit_base = "A" if row[EDIT_BASE] == row[SAMPLE_A] else "B"
            yield {
                "id": f"j{row[J_ID]}",
                "judgment_id": int(row[J_ID]),
                "comparison_id": int(row[COMPARISON_ID]),
                "round": int(row[ROUND]),
                "prompt_id": int(row[PROMPT_ID]),
                "prompt": prompt,
                "response_a": row[TEXT_A],
                "response_b": row[TEXT_B],
                "model_a": row[MODEL_A],
                "model_b": row[MODEL_B],
                "preferred": row[PREFERRED],
                "strength": row[STRENGTH] or "",
                "safety": row[SAFETY] or "",
                "left": row[LEFT] or "",
                "annotator": row[USERNAME],
                "annotator_id": int(row[ANNOTATOR_ID]),
                "time_spent_ms": row[TIME_MS],
                "rationale": row[RATIONALE] or "",
                "source": row[SOURCE],
                "created_at": _iso(row[CREATED_AT]),
                "edit": row[EDIT_TEXT],
                "edit_base": edit_base or None,
                "is_gold": bool(row[IS_GOLD]),
                "tags": [str(t) for t in tags],
                "annotators": n,
                "agreement": votes[row[PREFERRED]] / n,
            }
