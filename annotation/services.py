"""Writes. Every change to the annotation domain goes through a function here
(STYLE.md §2): the htmx pages, the REST API, the management commands and the
Celery tasks all call the same services.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone
from django.utils.text import slugify

from annotation.assignment import open_rounds_key
from annotation.authentication import hash_key, new_key, tokens_forget
from annotation.models import ApiToken, Comparison, PairingStrategy, Project, Round, RoundStatus, Sample
from annotation.roles import ROLE_PERMISSIONS, Role
from models_service.models import Backend, ModelVersion

User = get_user_model()

VALID_ROLES = {"system", "user", "assistant"}


# --- Content normalisation and hashing -------------------------------------------------


def messages_normalize(value: str | Sequence[Any]) -> list[dict[str, str]]:
    """Turn a prompt given as a string or a message list into the canonical message list.

    Raises ValueError with a message fit for a user when the shape is wrong.
    """
    if isinstance(value, str):
        text = value.replace("\r\n", "\n").strip()
        if not text:
            raise ValueError("the prompt is empty")
        return [{"role": "user", "content": text}]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError("a prompt must be a non-empty string or a non-empty list of {role, content} messages")
    messages: list[dict[str, str]] = []
    for index, message in enumerate(value):
        if not isinstance(message, dict):
            raise ValueError(f"message {index} is not an object with 'role' and 'content'")
        role, content = message.get("role"), message.get("content")
        if role not in VALID_ROLES:
            raise ValueError(f"message {index} has role {role!r}; expected one of system, user, assistant")
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f"message {index} has no text in 'content'")
        extra = set(message) - {"role", "content"}
        if extra:
            raise ValueError(f"message {index} has unknown keys: {', '.join(sorted(extra))}")
        messages.append({"role": role, "content": content.replace("\r\n", "\n").strip()})
    if messages[-1]["role"] != "user":
        raise ValueError("the conversation must end with a user message (the turn the models answer)")
    if not any(m["role"] == "user" for m in messages):
        raise ValueError("the conversation has no user message")
    return messages


def messages_hash(messages: list[dict[str, str]]) -> str:
    # Canonical form: compact UTF-8 JSON with sorted keys (orjson: the import hot path).
    return hashlib.sha256(orjson.dumps(messages, option=orjson.OPT_SORT_KEYS)).hexdigest()


def messages_turns(messages: list[dict[str, str]]) -> int:
    return sum(1 for m in messages if m["role"] == "user")


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- Roles and users -------------------------------------------------------------------


def roles_sync(*, using: str = "default") -> None:
    """Create the role groups and give them their permissions (idempotent)."""
    from django.apps import apps
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using)
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.using(using).get_or_create(name=role.value)
        wanted = []
        for dotted in perms:
            app_label, codename = dotted.split(".")
            wanted.append(
                Permission.objects.using(using).get(content_type__app_label=app_label, codename=codename)
            )
        group.permissions.set(wanted)


def user_create(*, username: str, password: str | None, roles: Iterable[Role] = (), email: str = "", **extra: Any):
    user = User(username=username, email=email, **extra)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    if roles:
        user.groups.set(Group.objects.filter(name__in=[r.value for r in roles]))
    return user


def external_annotator_get_or_create(*, name: str) -> AbstractBaseUser:
    """An annotator from another tool or vendor, named in imported labels. Cannot log in."""
    slug = slugify(name.replace(":", "-"))[:140]
    username = "ext." + (slug or text_hash(name)[:16])
    user, created = User.objects.get_or_create(
        username=username, defaults={"first_name": name[:150], "is_active": False}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def api_token_create(*, user, name: str) -> tuple[ApiToken, str]:
    """Create a token and return it with its key; the key is not stored and cannot be shown again."""
    key = new_key()
    token = ApiToken.objects.create(user=user, name=name.strip() or "token", prefix=key[:10], key_hash=hash_key(key))
    return token, key


def api_token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    # Forget the cached look-up now, and again once the transaction commits: a request
    # that authenticated in between must not put the revoked token back for a minute.
    tokens_forget([token.key_hash])
    transaction.on_commit(lambda: tokens_forget([token.key_hash]))


# --- Projects, versions, rounds --------------------------------------------------------


@transaction.atomic
def project_create(*, name: str, created_by=None, slug: str = "", **options: Any) -> Project:
    project = Project(name=name.strip(), slug=slug or slugify(name)[:100], created_by=created_by, **options)
    project.full_clean()
    project.save()
    return project


def model_version_get_or_create(*, name: str, backend: str = Backend.IMPORTED, **fields: Any) -> ModelVersion:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A model version needs a name."})
    version, _ = ModelVersion.objects.get_or_create(name=name, defaults={"backend": backend, **fields})
    return version


@transaction.atomic
def round_create(
    *,
    project: Project,
    baseline: ModelVersion,
    candidate: ModelVersion,
    pairing: str = PairingStrategy.OLD_VS_NEW,
    name: str = "",
    status: str = RoundStatus.DRAFT,
    sampling: dict[str, Any] | None = None,
    arena_versions: Iterable[ModelVersion] = (),
) -> Round:
    """``sampling`` and ``arena_versions``: how the platform samples the round
    (models_service.services.RoundSampling). A round created open whose versions generate
    starts sampling at once (see ``round_open``)."""
    if pairing == PairingStrategy.OLD_VS_NEW and baseline.pk == candidate.pk:
        raise ValidationError("An old-vs-new round needs two different model versions.")
    # Lock the project row so two concurrent creations cannot take the same number.
    Project.objects.select_for_update().filter(pk=project.pk).first()
    number = (project.rounds.aggregate(m=Max("number"))["m"] or 0) + 1
    round_ = Round(
        project=project,
        number=number,
        name=name or f"Round {number}: {baseline.name} vs {candidate.name}",
        baseline=baseline,
        candidate=candidate,
        pairing=pairing,
        status=status,
        opened_at=timezone.now() if status == RoundStatus.OPEN else None,
        sampling=sampling or {},
    )
    round_.full_clean()
    round_.save()
    if arena_versions:
        round_.arena_versions.set(list(arena_versions))
    if sampling or arena_versions:
        from models_service.services import round_arms

        round_arms(round_)  # a bad sampling setting is refused now, not when sampling starts
    if status == RoundStatus.OPEN:
        _sampling_begin(round_)
    _forget_open_rounds(project.pk)
    return round_


def _sampling_begin(round_: Round) -> bool:
    """Rounds whose versions generate (vllm, openai, transformers) are sampled before they
    open: status ``sampling`` and jobs queued on the gpu queue (models_service); the round
    opens by itself when the last job ends. True when sampling was started here."""
    from models_service.models import SamplingJob
    from models_service.services import round_generates, sampling_start

    if round_.pairing == PairingStrategy.IMPORTED or SamplingJob.objects.filter(round=round_).exists():
        return False
    if not round_generates(round_):
        return False
    Round.objects.filter(pk=round_.pk).update(status=RoundStatus.SAMPLING, opened_at=None)
    round_.status = RoundStatus.SAMPLING
    sampling_start(round_=round_)
    return True


def _forget_open_rounds(project_id: int) -> None:
    # Now (this transaction's later reads) and after commit (a claim in between may have
    # cached the old list again).
    cache.delete(open_rounds_key(project_id))
    transaction.on_commit(lambda: cache.delete(open_rounds_key(project_id)))


@transaction.atomic
def round_open(*, round_: Round) -> Round:
    if round_.status == RoundStatus.CLOSED:
        raise ValidationError("A closed round cannot be reopened; start a new round.")
    if _sampling_begin(round_):
        _forget_open_rounds(round_.project_id)
        round_.refresh_from_db()
        return round_
    Round.objects.filter(pk=round_.pk).update(status=RoundStatus.OPEN, opened_at=round_.opened_at or timezone.now())
    _forget_open_rounds(round_.project_id)
    round_.refresh_from_db()
    return round_


@transaction.atomic
def round_close(*, round_: Round) -> Round:
    Round.objects.filter(pk=round_.pk).update(status=RoundStatus.CLOSED, closed_at=timezone.now())
    _forget_open_rounds(round_.project_id)
    round_.refresh_from_db()
    return round_


@transaction.atomic
def round_build_comparisons(*, round_: Round, seed_a: int | None = None, seed_b: int | None = None) -> int:
    """Pair the baseline's and the candidate's answers for every prompt that has both.

    A = baseline, B = candidate (sides are randomised per assignment, not here). Prompts
    that already have a comparison in the round are left alone, so this is idempotent.
    Returns the number of comparisons created.

    Rounds sampled by the platform pair their arms instead (the pairing strategy's
    samples, by seed; models_service.services.comparisons_build_sampled).
    """
    from models_service.models import SamplingJob

    if SamplingJob.objects.filter(round=round_).exists():
        from models_service.services import comparisons_build_sampled

        return comparisons_build_sampled(round_=round_)
    project = round_.project
    already = set(Comparison.objects.filter(round=round_).values_list("prompt_id", flat=True))

    def first_by_prompt(version_id: int, seed: int | None) -> dict[int, int]:
        # Samples that name a model or vendor stay out until a lead releases them.
        qs = Sample.objects.filter(prompt__project=project, model_version_id=version_id).filter(
            Q(identity_flagged=False) | Q(identity_released=True)
        )
        if seed is not None:
            qs = qs.filter(seed=seed)
        chosen: dict[int, int] = {}
        for sample_id, prompt_id in qs.order_by("id").values_list("id", "prompt_id"):
            chosen.setdefault(prompt_id, sample_id)
        return chosen

    a_by_prompt = first_by_prompt(round_.baseline_id, seed_a)
    b_by_prompt = first_by_prompt(round_.candidate_id, seed_b)
    new = [
        Comparison(
            round=round_,
            prompt_id=prompt_id,
            sample_a_id=a_by_prompt[prompt_id],
            sample_b_id=b_by_prompt[prompt_id],
            required_judgments=project.overlap,
        )
        for prompt_id in sorted(a_by_prompt.keys() & b_by_prompt.keys())
        if prompt_id not in already and a_by_prompt[prompt_id] != b_by_prompt[prompt_id]
    ]
    Comparison.objects.bulk_create(new, batch_size=1000)
    return len(new)


# --- API support -----------------------------------------------------------------------

MODEL_VERSION_EDITABLE_FIELDS = frozenset({"name", "parent", "backend", "config", "default_sampling", "description"})
PROJECT_EDITABLE_FIELDS = frozenset(
    {
        "name", "description", "guidelines", "overlap", "allow_tie", "allow_both_bad", "allow_cant_judge",
        "require_safety", "edit_policy", "lease_seconds", "gold_rate", "identity_terms", "is_active",
    }
)


def _check_editable(fields: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(fields) - allowed
    if unknown:
        # A caller's bug, not a user's mistake: the API's serializers only pass known fields.
        raise TypeError(f"cannot change {', '.join(sorted(unknown))}")


def _model_version_check_parent(version: ModelVersion, parent: ModelVersion | None) -> None:
    """A version cannot descend from itself, directly or through its ancestors."""
    seen: set[int] = set()
    node = parent
    while node is not None and version.pk is not None:
        if node.pk == version.pk:
            raise ValidationError({"parent": "A model version cannot descend from itself."})
        if node.pk in seen:  # a cycle that is already stored; do not loop forever
            break
        seen.add(node.pk)
        node = node.parent


@transaction.atomic
def model_version_create(
    *,
    name: str,
    backend: str = Backend.IMPORTED,
    parent: ModelVersion | None = None,
    config: dict[str, Any] | None = None,
    default_sampling: dict[str, Any] | None = None,
    description: str = "",
) -> ModelVersion:
    """Register a checkpoint; unlike ``model_version_get_or_create`` a taken name is an error."""
    version = ModelVersion(
        name=name.strip(),
        backend=backend,
        parent=parent,
        config=config or {},
        default_sampling=default_sampling or {},
        description=description,
    )
    version.full_clean()
    version.save()
    return version


@transaction.atomic
def model_version_update(*, version: ModelVersion, **fields: Any) -> ModelVersion:
    _check_editable(fields, MODEL_VERSION_EDITABLE_FIELDS)
    if "name" in fields:
        fields["name"] = fields["name"].strip()
    if "parent" in fields:
        _model_version_check_parent(version, fields["parent"])
    for name, value in fields.items():
        setattr(version, name, value)
    version.full_clean()
    if fields:
        version.save(update_fields=list(fields))
    return version


@transaction.atomic
def project_update(*, project: Project, **fields: Any) -> Project:
    """Change a project's settings. The slug is its address and stays as it is."""
    _check_editable(fields, PROJECT_EDITABLE_FIELDS)
    if "name" in fields:
        fields["name"] = fields["name"].strip()
    for name, value in fields.items():
        setattr(project, name, value)
    project.full_clean()
    if fields:
        project.save(update_fields=list(fields))
    return project
