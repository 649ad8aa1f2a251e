"""The annotation domain: projects, rounds, prompts, samples, comparisons, assignments,
judgments and edits (docs/architecture.md). Model versions are models_service's; rounds
and samples point to them by name, so this app imports nothing of that one.

Judgments are stored in *sample terms* (A/B), never screen terms: which sample the
annotator saw on the left is recorded separately so position bias can be measured.
Constraints live in the database so that no code path - admin, import, API, a bug -
can write a bad state. Cross-table rules (a comparison's samples answer the
comparison's prompt) are enforced by composite foreign keys on PostgreSQL and by
triggers on SQLite (see migration 0002).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class EditPolicy(models.TextChoices):
    OFF = "off", "No edits"
    OPTIONAL = "optional", "Optional"
    REQUIRED_WHEN_BOTH_BAD = "both_bad", "Required when both answers are bad"
    ALWAYS = "always", "Required on every judgment with a preference or both bad"


class Project(models.Model):
    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    guidelines = models.TextField(blank=True, help_text="Markdown shown to annotators beside every pair.")
    overlap = models.PositiveSmallIntegerField(default=1, help_text="Distinct annotators who judge each comparison.")
    allow_tie = models.BooleanField(default=True)
    allow_both_bad = models.BooleanField(default=True)
    allow_cant_judge = models.BooleanField(default=True)
    require_safety = models.BooleanField(default=False)
    edit_policy = models.CharField(max_length=20, choices=EditPolicy.choices, default=EditPolicy.REQUIRED_WHEN_BOTH_BAD)
    lease_seconds = models.PositiveIntegerField(default=900)
    gold_rate = models.FloatField(default=0.0, help_text="Share of gold items mixed into an annotator's queue.")
    identity_terms = models.JSONField(
        default=list,
        blank=True,
        help_text="Model/vendor names whose mention keeps a sample out of annotation until a lead releases it "
        "(whole words, any case, parts written together or apart: OpenAI, open-ai, Open AI).",
    )
    is_active = models.BooleanField(default=True)
    live_mode = models.BooleanField(
        default=False,
        help_text="Annotators may write their own prompts; both models of the open round answer live (models_service).",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(overlap__gte=1) & Q(overlap__lte=50), name="project_overlap_range"),
            models.CheckConstraint(condition=Q(lease_seconds__gte=30), name="project_lease_min"),
            models.CheckConstraint(condition=Q(gold_rate__gte=0) & Q(gold_rate__lte=1), name="project_gold_rate_range"),
            models.CheckConstraint(condition=~Q(slug=""), name="project_slug_not_empty"),
        ]

    def __str__(self) -> str:
        return self.name


class PairingStrategy(models.TextChoices):
    OLD_VS_NEW = "old_vs_new", "Previous model vs new model"
    TEMPERATURES = "temperatures", "One model at two temperatures"
    SEEDS = "seeds", "One model at two seeds"
    ARENA = "arena", "Arena among several versions"
    IMPORTED = "imported", "Imported pairs"


class RoundStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SAMPLING = "sampling", "Sampling"
    OPEN = "open", "Open for annotation"
    CLOSED = "closed", "Closed"


class Round(models.Model):
    """One iteration of the loop: ``baseline`` (previous model) against ``candidate`` (new)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveIntegerField()
    name = models.CharField(max_length=200, blank=True)
    baseline = models.ForeignKey(
        "models_service.ModelVersion", on_delete=models.PROTECT, related_name="rounds_as_baseline"
    )
    candidate = models.ForeignKey(
        "models_service.ModelVersion", on_delete=models.PROTECT, related_name="rounds_as_candidate"
    )
    pairing = models.CharField(max_length=20, choices=PairingStrategy.choices, default=PairingStrategy.OLD_VS_NEW)
    status = models.CharField(max_length=20, choices=RoundStatus.choices, default=RoundStatus.DRAFT)
    # How the platform samples this round (models_service.services.RoundSampling: seed,
    # temperatures or seeds of the one-model strategies, max_tokens, a prompt tag).
    sampling = models.JSONField(default=dict, blank=True)
    # Arena rounds: the versions besides baseline and candidate that take part.
    arena_versions = models.ManyToManyField("models_service.ModelVersion", blank=True, related_name="arena_rounds")
    created_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="round_number_unique_in_project"),
            models.CheckConstraint(
                condition=~Q(pairing=PairingStrategy.OLD_VS_NEW) | ~Q(baseline=F("candidate")),
                name="round_old_vs_new_needs_two_versions",
            ),
        ]

    def __str__(self) -> str:
        return self.name or f"Round {self.number}"


class Prompt(models.Model):
    """A conversation to be answered: ``messages`` is a list of ``{role, content}``, ending on a user turn."""

    # Indexed by the unique (project, content_hash) constraint; no separate FK index.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts", db_index=False)
    messages = models.JSONField()
    tags = models.JSONField(default=list, blank=True)
    source = models.CharField(max_length=200, blank=True)
    external_id = models.CharField(max_length=200, blank=True)
    # sha256 of the canonical JSON of ``messages``: identical prompts are stored once per project.
    content_hash = models.CharField(max_length=64)
    turns = models.PositiveSmallIntegerField(default=1, help_text="Number of user turns in the conversation.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "content_hash"], name="prompt_unique_content_in_project"),
            models.CheckConstraint(condition=Q(turns__gte=1), name="prompt_has_a_turn"),
        ]
        indexes = [models.Index(fields=["project", "external_id"], name="prompt_external_id")]

    def __str__(self) -> str:
        last = self.messages[-1]["content"] if self.messages else ""
        return last[:80]

    @property
    def last_user_message(self) -> str:
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return message.get("content", "")
        return ""


class Sample(models.Model):
    """One model version's answer to one prompt.

    ``seed`` is set for samples this platform generates (unique per prompt, version and
    seed, which makes sampling idempotent); imported answers carry no seed and are
    de-duplicated by ``text_hash`` instead.
    """

    # Indexed by the unique constraints below (prompt first); no separate FK index.
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="samples", db_index=False)
    model_version = models.ForeignKey("models_service.ModelVersion", on_delete=models.PROTECT, related_name="samples")
    text = models.TextField()
    text_hash = models.CharField(max_length=64)
    sampling_params = models.JSONField(default=dict, blank=True)
    seed = models.BigIntegerField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=40, blank=True)
    identity_flagged = models.BooleanField(default=False)
    identity_released = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["prompt", "model_version", "seed"], name="sample_unique_seed"),
            models.UniqueConstraint(fields=["prompt", "model_version", "text_hash"], name="sample_unique_text"),
            # Target of the composite foreign keys from Comparison (migration 0002).
            models.UniqueConstraint(fields=["id", "prompt"], name="sample_id_prompt"),
        ]

    def __str__(self) -> str:
        return f"{self.model_version_id}:{self.text[:60]}"


class Preference(models.TextChoices):
    A = "A", "A is better"
    B = "B", "B is better"
    TIE = "tie", "Tie"
    BOTH_BAD = "both_bad", "Both are bad"
    CANT_JUDGE = "cant_judge", "Can't judge"


class Strength(models.TextChoices):
    # Llama 2's four levels; Llama 3 calls the last "marginally better".
    SIGNIFICANTLY = "significantly", "Significantly better"
    BETTER = "better", "Better"
    SLIGHTLY = "slightly", "Slightly better"
    NEGLIGIBLY = "negligibly", "Negligibly better / unsure"


class Safety(models.TextChoices):
    # Llama 2's three bins (the chosen answer is the preferred one), plus the case that
    # Llama 2 excludes from training, recorded so it can be excluded rather than lost.
    CHOSEN_SAFE_OTHER_UNSAFE = "chosen_safe", "Preferred is safe, other unsafe"
    BOTH_SAFE = "both_safe", "Both safe"
    BOTH_UNSAFE = "both_unsafe", "Both unsafe"
    CHOSEN_UNSAFE_OTHER_SAFE = "chosen_unsafe", "Preferred is unsafe, other safe"


class Side(models.TextChoices):
    A = "A", "Sample A"
    B = "B", "Sample B"


class Comparison(models.Model):
    """Two answers to one prompt in one round. Which one is shown left is decided per assignment."""

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="comparisons", db_index=False)
    # These three are enforced together by the composite keys of migration 0002
    # ((sample_x, prompt) -> sample (id, prompt)), which imply the plain ones; leaving
    # the plain FK constraints out halves the checks on every inserted comparison.
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="comparisons", db_constraint=False)
    sample_a = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    sample_b = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    required_judgments = models.PositiveSmallIntegerField(default=1)
    # Counters kept by the judgment and assignment services (one UPDATE per change),
    # so the assignment engine finds open work without counting rows.
    judgment_count = models.PositiveSmallIntegerField(default=0)
    # Slots taken: judgments plus live leases. The assignment engine hands a comparison
    # out only while taken < required_judgments, and moves this counter in the same
    # transaction as the assignment, so concurrent claims can never over-book it.
    taken = models.PositiveSmallIntegerField(default=0)
    is_gold = models.BooleanField(default=False)
    gold_preferred = models.CharField(max_length=20, choices=Preference.choices, blank=True)
    # An answer names a model (identity-flagged) and no lead has released it yet: the pair
    # is not handed out, whatever path made it (imports write such pairs with their labels;
    # sampling and live mode wait for the release before making one). Cleared on release.
    held = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["round", "sample_a", "sample_b"], name="comparison_unique_pair"),
            models.CheckConstraint(condition=~Q(sample_a=F("sample_b")), name="comparison_two_samples"),
            models.CheckConstraint(condition=Q(required_judgments__gte=1), name="comparison_needs_a_judgment"),
            models.CheckConstraint(condition=Q(judgment_count__lte=F("taken")), name="comparison_judgments_hold_slots"),
            models.CheckConstraint(
                condition=Q(is_gold=False, gold_preferred="") | Q(is_gold=True) & ~Q(gold_preferred=""),
                name="comparison_gold_has_answer",
            ),
        ]
        indexes = [
            # The two pools the engine draws from: partly taken (finish those first) and untouched.
            models.Index(
                fields=["round", "id"],
                name="comparison_pool_partly",
                condition=Q(is_gold=False, held=False, taken__gt=0, taken__lt=F("required_judgments")),
            ),
            models.Index(
                fields=["round", "id"], name="comparison_pool_fresh", condition=Q(is_gold=False, held=False, taken=0)
            ),
            models.Index(fields=["round", "id"], name="comparison_gold", condition=Q(is_gold=True, held=False)),
        ]

    def __str__(self) -> str:
        return f"Comparison {self.pk}"


class AssignmentStatus(models.TextChoices):
    ACTIVE = "active", "Leased"
    SUBMITTED = "submitted", "Judged"
    SKIPPED = "skipped", "Skipped"
    EXPIRED = "expired", "Lease expired"


class Assignment(models.Model):
    """A comparison handed to one annotator under a lease, with the side shown on the left."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    left = models.CharField(max_length=1, choices=Side.choices)
    status = models.CharField(max_length=20, choices=AssignmentStatus.choices, default=AssignmentStatus.ACTIVE)
    leased_at = models.DateTimeField()
    lease_expires_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    skip_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["comparison", "annotator"], name="assignment_once_per_annotator"),
            models.CheckConstraint(condition=Q(lease_expires_at__gt=F("leased_at")), name="assignment_lease_positive"),
            models.CheckConstraint(
                condition=~Q(status=AssignmentStatus.SKIPPED) | ~Q(skip_reason=""), name="assignment_skip_has_reason"
            ),
        ]
        indexes = [models.Index(fields=["status", "lease_expires_at"], name="assignment_lease")]

    def __str__(self) -> str:
        return f"Assignment {self.pk} of comparison {self.comparison_id}"


class JudgmentSource(models.TextChoices):
    UI = "ui", "Annotator page"
    API = "api", "API"
    IMPORT = "import", "Imported"


class Judgment(models.Model):
    """One annotator's verdict on one comparison, in sample terms.

    ``assignment`` is empty only for judgments imported from another tool or vendor;
    those carry no side shown left (unknown) and may carry no strength.
    """

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="judgments", db_index=False)
    # Indexed by judgment_by_annotator (annotator, created_at); no separate FK index.
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="judgments", db_index=False
    )
    assignment = models.OneToOneField(
        Assignment, null=True, blank=True, on_delete=models.CASCADE, related_name="judgment"
    )
    preferred = models.CharField(max_length=20, choices=Preference.choices)
    strength = models.CharField(max_length=20, choices=Strength.choices, blank=True)
    safety = models.CharField(max_length=20, choices=Safety.choices, blank=True)
    left = models.CharField(max_length=1, choices=Side.choices, blank=True)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    rationale = models.TextField(blank=True)
    source = models.CharField(max_length=10, choices=JudgmentSource.choices, default=JudgmentSource.UI)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["comparison", "annotator"], name="judgment_once_per_annotator"),
            # A strength belongs to a preference; ties and the like carry none.
            models.CheckConstraint(
                condition=Q(preferred__in=["A", "B"]) | Q(strength=""), name="judgment_strength_only_for_preference"
            ),
            models.CheckConstraint(
                condition=Q(source=JudgmentSource.IMPORT) | ~Q(preferred__in=["A", "B"]) | ~Q(strength=""),
                name="judgment_preference_has_strength",
            ),
            models.CheckConstraint(
                condition=Q(source=JudgmentSource.IMPORT) | Q(assignment__isnull=False),
                name="judgment_has_assignment_unless_imported",
            ),
            models.CheckConstraint(
                condition=Q(assignment__isnull=True) | ~Q(left=""), name="judgment_assigned_records_left"
            ),
        ]
        indexes = [models.Index(fields=["annotator", "created_at"], name="judgment_by_annotator")]

    def __str__(self) -> str:
        return f"Judgment {self.pk}: {self.preferred} on comparison {self.comparison_id}"


class Edit(models.Model):
    """The teacher-critic rewrite: the annotator's improved answer, started from one of the two samples."""

    judgment = models.OneToOneField(Judgment, on_delete=models.CASCADE, related_name="edit")
    base_sample = models.ForeignKey(Sample, on_delete=models.PROTECT, related_name="edits")
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(text=""), name="edit_not_empty")]

    def __str__(self) -> str:
        return f"Edit of judgment {self.judgment_id}"
