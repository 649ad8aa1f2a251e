"""Tallies kept by the database, so that the dashboards read aggregates instead of
scanning every judgment.

Triggers on ``annotation_judgment`` and ``annotation_edit`` (migration 0002) keep three
tables up to date in the same statement as the judgment's own insert, update or delete,
whatever wrote it (the annotator's page, the API, an import, the admin, a cascade):

- ``ComparisonTally``: a comparison's verdicts in sample terms, by strength, with what
  the reports group by (round, prompt, the two answers' versions, the prompt's turns and tags);
- ``VerdictTally``: judgments per round, annotator, pair of versions and verdict
  (preferred, strength, safety): the strength, safety and annotator breakdowns and the
  Bradley-Terry battles;
- ``ProjectActivity``: per project and annotator, judgments and edits made, and a change
  counter: a project's cached reports are fresh while the sum of its counters stands
  still, so a judgment in one project leaves another's reports cached;
- ``PromptActivity`` (migration 0003): per project, how often its prompts' tags or turns
  changed (an import that finds a prompt again adds its tags): part of the fingerprint,
  so the breakdown by tag follows a retagging.

No table here has a row per judgment, and no row is written by two annotators at once
(comparison rows aside, which the judgment's own statement locks anyway), so the
triggers add no contention. ``insights.services.tallies_rebuild`` recomputes them from
scratch (after a TRUNCATE or a restore that bypassed the triggers).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


def _ref(to: str, **kwargs) -> models.ForeignKey:
    # References without database constraints, left alone by Django's deletes: the rows are
    # written and removed by the triggers alone (a deleted comparison, round or project
    # takes its rows along after its judgments have been counted out), in the order the
    # database deletes things, whatever deletes them.
    return models.ForeignKey(to, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", **kwargs)


class ComparisonTally(models.Model):
    comparison = models.OneToOneField(
        "annotation.Comparison", primary_key=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    round = _ref("annotation.Round", db_index=False)
    prompt = _ref("annotation.Prompt", db_index=False)
    version_a = _ref("models_service.ModelVersion", db_index=False)
    version_b = _ref("models_service.ModelVersion", db_index=False)
    turns = models.PositiveSmallIntegerField()
    # The prompt's tags, kept in step with the prompt (a trigger on annotation_prompt): the
    # breakdown by tag reads them here instead of joining 500,000 prompts.
    tags = models.JSONField(default=list)
    a_significantly = models.IntegerField(default=0)
    a_better = models.IntegerField(default=0)
    a_slightly = models.IntegerField(default=0)
    a_negligibly = models.IntegerField(default=0)
    a_unrated = models.IntegerField(default=0)
    b_significantly = models.IntegerField(default=0)
    b_better = models.IntegerField(default=0)
    b_slightly = models.IntegerField(default=0)
    b_negligibly = models.IntegerField(default=0)
    b_unrated = models.IntegerField(default=0)
    tie = models.IntegerField(default=0)
    both_bad = models.IntegerField(default=0)
    cant_judge = models.IntegerField(default=0)
    total = models.IntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["round", "prompt"], name="comparisontally_round")]

    def __str__(self) -> str:
        return f"Comparison {self.comparison_id}: {self.total} verdicts"


class VerdictTally(models.Model):
    round = _ref("annotation.Round", db_index=False)
    annotator = _ref(settings.AUTH_USER_MODEL, db_index=False)
    version_a = _ref("models_service.ModelVersion", db_index=False)
    version_b = _ref("models_service.ModelVersion", db_index=False)
    preferred = models.CharField(max_length=20)
    strength = models.CharField(max_length=20, blank=True)
    safety = models.CharField(max_length=20, blank=True)
    n = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["round", "annotator", "version_a", "version_b", "preferred", "strength", "safety"],
                name="verdicttally_key",
            )
        ]

    def __str__(self) -> str:
        return f"Round {self.round_id}, annotator {self.annotator_id}: {self.preferred} x{self.n}"


class ProjectActivity(models.Model):
    project = _ref("annotation.Project", db_index=False)
    annotator = _ref(settings.AUTH_USER_MODEL, db_index=False)
    judgments = models.IntegerField(default=0)
    edits = models.IntegerField(default=0)
    # Moves on every insert, update or delete of this annotator's judgments and edits here.
    changes = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "annotator"], name="projectactivity_key")]

    def __str__(self) -> str:
        return f"Project {self.project_id}, annotator {self.annotator_id}: {self.judgments} judgments"


class PromptActivity(models.Model):
    project = models.OneToOneField(
        "annotation.Project", primary_key=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    # Moves whenever a prompt of the project changes its tags or its number of turns.
    changes = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"Project {self.project_id}: prompts changed {self.changes} times"
