"""Judged comparisons built straight through the ORM, in sample terms, for export tests."""

from __future__ import annotations

from dataclasses import dataclass

from annotation.models import (
    Comparison,
    Edit,
    Judgment,
    JudgmentSource,
    Prompt,
    Round,
    Sample,
)
from annotation.roles import Role
from annotation.services import messages_hash, messages_turns, text_hash, user_create


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
        project=round_.project, messages=messages, tags=tags or [], content_hash=messages_hash(messages),
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
        round=round_, prompt=prompt, sample_a=a, sample_b=b, required_judgments=max(1, len(votes)),
        judgment_count=len(votes), taken=len(votes), is_gold=is_gold, gold_preferred="A" if is_gold else "",
    )
    for vote in votes:
        strength = vote.strength or ("better" if vote.preferred in ("A", "B") else "")
        judgment = Judgment.objects.create(
            comparison=comparison, annotator=vote.annotator, preferred=vote.preferred, strength=strength,
            safety=vote.safety, source=JudgmentSource.IMPORT,
        )
        if vote.edit:
            base = b if vote.preferred == "B" else a
            Edit.objects.create(judgment=judgment, base_sample=base, text=vote.edit)
    return comparison


def annotators(n: int, prefix: str = "rater") -> list:
    return [user_create(username=f"{prefix}{i}", password=None, roles=[Role.ANNOTATOR]) for i in range(n)]


def bulk_judged(round_: Round, comparisons: int, raters: list, *, seed: int = 0, words: int = 30) -> int:
    """``comparisons`` pairs judged by every one of ``raters``, written in a few bulk inserts."""
    import random

    rng = random.Random(seed)
    vocab = ["reward", "model", "policy", "token", "sample", "human", "preference", "round", "answer", "prompt", "because", "therefore"]

    def text(i: int, tag: str) -> str:
        return f"{tag} {i}: " + " ".join(rng.choice(vocab) for _ in range(words))

    prompts = []
    for i in range(comparisons):
        messages = [{"role": "user", "content": text(i, "Question")}]
        prompts.append(Prompt(project=round_.project, messages=messages, tags=[rng.choice(["code", "math"])],
                              content_hash=messages_hash(messages), turns=1))
    prompts = Prompt.objects.bulk_create(prompts, batch_size=1000)
    samples = []
    for i, prompt in enumerate(prompts):
        for version, tag in ((round_.baseline, "A"), (round_.candidate, "B")):
            body = text(i, f"Answer {tag}")
            samples.append(Sample(prompt=prompt, model_version=version, text=body, text_hash=text_hash(body)))
    samples = Sample.objects.bulk_create(samples, batch_size=1000)
    comps = Comparison.objects.bulk_create(
        [
            Comparison(round=round_, prompt=prompt, sample_a=samples[2 * i], sample_b=samples[2 * i + 1],
                       required_judgments=len(raters), judgment_count=len(raters), taken=len(raters))
            for i, prompt in enumerate(prompts)
        ],
        batch_size=1000,
    )
    judgments = []
    for comparison in comps:
        for rater in raters:
            preferred = rng.choice(["A", "A", "B", "B", "tie"])
            strength = rng.choice(["significantly", "better", "slightly", "negligibly"]) if preferred in "AB" else ""
            judgments.append(Judgment(comparison=comparison, annotator=rater, preferred=preferred, strength=strength,
                                      source=JudgmentSource.IMPORT))
    Judgment.objects.bulk_create(judgments, batch_size=2000)
    return len(judgments)
