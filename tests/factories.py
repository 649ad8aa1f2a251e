"""The one place tests build judged data straight through the ORM (the database's own
rules and triggers still apply): prompts, samples, comparisons and judgments, given in
sample terms (``Vote``, ``comparison_make``) or in candidate terms (``Builder``)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from accounts.roles import Role
from accounts.services import user_create
from annotation.models import Comparison, Edit, Judgment, JudgmentSource, Prompt, Round, Sample
from core.text import messages_hash, messages_turns, text_hash

# Verdicts in candidate terms, turned into sample terms by where the candidate sits.
NEW, OLD, TIE, BAD, CANT = "new", "old", "tie", "both_bad", "cant_judge"


class Builder:
    """Prompts, samples and comparisons of a round, and judgments given in candidate terms."""

    def __init__(self, round_):
        self.round = round_
        self.count = 0

    def comparison(self, *, tags=("helpfulness",), turns=1, candidate_is_a=None, gold="") -> Comparison:
        self.count += 1
        i = self.count
        messages = []
        for t in range(turns):
            messages.append({"role": "user", "content": f"Round {self.round.number} question {i} turn {t}"})
            if t < turns - 1:
                messages.append({"role": "assistant", "content": f"reply {t}"})
        prompt = Prompt.objects.create(
            project=self.round.project,
            messages=messages,
            tags=list(tags),
            content_hash=messages_hash(messages),
            turns=turns,
        )
        base = Sample.objects.create(
            prompt=prompt, model_version=self.round.baseline, text=f"old {i}", text_hash=text_hash(f"old {i}")
        )
        cand = Sample.objects.create(
            prompt=prompt, model_version=self.round.candidate, text=f"new {i}", text_hash=text_hash(f"new {i}")
        )
        candidate_is_a = (i % 2 == 0) if candidate_is_a is None else candidate_is_a
        a, b = (cand, base) if candidate_is_a else (base, cand)
        return Comparison.objects.create(
            round=self.round,
            prompt=prompt,
            sample_a=a,
            sample_b=b,
            required_judgments=3,
            is_gold=bool(gold),
            gold_preferred=gold,
        )

    def judge(
        self,
        comparison,
        annotator,
        verdict,
        *,
        strength="better",
        safety="",
        left="A",
        ms=30_000,
        when=None,
        edit=False,
    ):
        candidate_side = "A" if comparison.sample_a.model_version_id == self.round.candidate_id else "B"
        other = "B" if candidate_side == "A" else "A"
        preferred = {NEW: candidate_side, OLD: other}.get(verdict, verdict)
        judgment = Judgment.objects.create(
            comparison=comparison,
            annotator=annotator,
            preferred=preferred,
            strength=strength if preferred in ("A", "B") else "",
            safety=safety,
            left=left,
            time_spent_ms=ms,
            source=JudgmentSource.IMPORT,
        )
        if when is not None:
            Judgment.objects.filter(pk=judgment.pk).update(created_at=when)
        if edit:
            Edit.objects.create(judgment=judgment, base_sample=comparison.sample_a, text="better text")
        return judgment


@dataclass
class Vote:
    annotator: object
    preferred: str  # A, B, tie, both_bad, cant_judge
    strength: str = ""
    safety: str = ""
    edit: str = ""  # a teacher-critic rewrite of the preferred (or of A when both bad)


def prompt_make(round_: Round, text: str | list[dict], tags: list[str] | None = None) -> Prompt:
    messages = [{"role": "user", "content": text}] if isinstance(text, str) else text
    return Prompt.objects.create(
        project=round_.project,
        messages=messages,
        tags=tags or [],
        content_hash=messages_hash(messages),
        turns=messages_turns(messages),
    )


def comparison_make(
    round_: Round, prompt: Prompt | str, text_a: str, text_b: str, votes: list[Vote], *, tags=None, is_gold=False
) -> Comparison:
    if not isinstance(prompt, Prompt):
        prompt = prompt_make(round_, prompt, tags)
    a = Sample.objects.create(prompt=prompt, model_version=round_.baseline, text=text_a, text_hash=text_hash(text_a))
    b = Sample.objects.create(prompt=prompt, model_version=round_.candidate, text=text_b, text_hash=text_hash(text_b))
    comparison = Comparison.objects.create(
        round=round_,
        prompt=prompt,
        sample_a=a,
        sample_b=b,
        required_judgments=max(1, len(votes)),
        judgment_count=len(votes),
        taken=len(votes),
        is_gold=is_gold,
        gold_preferred="A" if is_gold else "",
    )
    for vote in votes:
        strength = vote.strength or ("better" if vote.preferred in ("A", "B") else "")
        judgment = Judgment.objects.create(
            comparison=comparison,
            annotator=vote.annotator,
            preferred=vote.preferred,
            strength=strength,
            safety=vote.safety,
            source=JudgmentSource.IMPORT,
        )
        if vote.edit:
            base = b if vote.preferred == "B" else a
            Edit.objects.create(judgment=judgment, base_sample=base, text=vote.edit)
    return comparison


def annotators(n: int, prefix: str = "rater") -> list:
    return [user_create(username=f"{prefix}{i}", password=None, roles=[Role.ANNOTATOR]) for i in range(n)]


def bulk_judged(round_: Round, comparisons: int, raters: list, *, seed: int = 0, words: int = 30) -> int:
    """``comparisons`` pairs judged by every one of ``raters``, written in a few bulk inserts."""
    rng = random.Random(seed)
    vocab = [
        "reward",
        "model",
        "policy",
        "token",
        "sample",
        "human",
        "preference",
        "round",
        "answer",
        "prompt",
        "because",
        "therefore",
    ]

    def text(i: int, tag: str) -> str:
        return f"{tag} {i}: " + " ".join(rng.choice(vocab) for _ in range(words))

    prompts = []
    for i in range(comparisons):
        messages = [{"role": "user", "content": text(i, "Question")}]
        prompts.append(
            Prompt(
                project=round_.project,
                messages=messages,
                tags=[rng.choice(["code", "math"])],
                content_hash=messages_hash(messages),
                turns=1,
            )
        )
    prompts = Prompt.objects.bulk_create(prompts, batch_size=1000)
    samples = []
    for i, prompt in enumerate(prompts):
        for version, tag in ((round_.baseline, "A"), (round_.candidate, "B")):
            body = text(i, f"Answer {tag}")
            samples.append(Sample(prompt=prompt, model_version=version, text=body, text_hash=text_hash(body)))
    samples = Sample.objects.bulk_create(samples, batch_size=1000)
    comps = Comparison.objects.bulk_create(
        [
            Comparison(
                round=round_,
                prompt=prompt,
                sample_a=samples[2 * i],
                sample_b=samples[2 * i + 1],
                required_judgments=len(raters),
                judgment_count=len(raters),
                taken=len(raters),
            )
            for i, prompt in enumerate(prompts)
        ],
        batch_size=1000,
    )
    judgments = []
    for comparison in comps:
        for rater in raters:
            preferred = rng.choice(["A", "A", "B", "B", "tie"])
            strength = rng.choice(["significantly", "better", "slightly", "negligibly"]) if preferred in "AB" else ""
            judgments.append(
                Judgment(
                    comparison=comparison,
                    annotator=rater,
                    preferred=preferred,
                    strength=strength,
                    source=JudgmentSource.IMPORT,
                )
            )
    Judgment.objects.bulk_create(judgments, batch_size=2000)
    return len(judgments)
