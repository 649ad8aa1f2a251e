"""Writes about model versions (checkpoints): register, change, and find-or-create the
imported ones that files name. A version's backend settings and default sampling
parameters are checked against the backend's typed schema, and an ``openai`` server's
host against the outbound policy (``ModelVersion.clean``).

Where a version sends prompts and which key it sends (its backend, and the settings each
backend lists in ``endpoint_fields``: ``base_url``, ``api_key_env`` and ``model`` of an
``openai`` server, a local model's path) and whether it runs code shipped with a model
(``trust_remote_code``) are a superuser's decision: anyone else registers a new version
instead of repointing one that rounds, samples or live turns already rely on.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from models_service.backends import CONFIG_SCHEMAS
from models_service.models import Backend, ModelVersion
from models_service.selectors import model_version_in_use

MODEL_VERSION_EDITABLE_FIELDS = frozenset({"name", "parent", "backend", "config", "default_sampling", "description"})


def model_version_get_or_create(*, name: str, backend: str = Backend.IMPORTED, **fields: Any) -> ModelVersion:
    """The version of this name, created (imported unless told otherwise) when missing."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A model version needs a name."})
    if (backend != Backend.IMPORTED or fields.get("config")) and not ModelVersion.objects.filter(name=name).exists():
        # A new version that generates gets the checks of model_version_create, from no one in particular.
        candidate = ModelVersion(name=name, backend=backend, **fields)
        model_version_privileges_check(
            version=None, by=None, backend=backend, config=candidate.config, changed={"config"}
        )
        candidate.clean()
    version, _ = ModelVersion.objects.get_or_create(name=name, defaults={"backend": backend, **fields})
    return version


def _check_parent(version: ModelVersion, parent: ModelVersion | None) -> None:
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


def _is_superuser(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_active", False) and getattr(user, "is_superuser", False))


def _endpoint(backend: str, config: Any) -> dict[str, Any]:
    """The settings of ``config`` that decide where prompts and keys go, as the schema reads them."""
    schema = CONFIG_SCHEMAS.get(backend)
    if schema is None or not isinstance(config, dict):
        return {"config": config}
    values: dict[str, Any] = {}
    for name in schema.endpoint_fields:
        field = schema.model_fields[name]
        value = config.get(name, field.default)
        if name == "base_url" and isinstance(value, str):
            value = value.strip().rstrip("/")  # as OpenAIConfig stores it
        values[name] = value
    return values


def _remote_code(config: Any) -> bool:
    return isinstance(config, dict) and config.get("trust_remote_code") is True


def model_version_privileges_check(
    *, version: ModelVersion | None, by: Any, backend: str, config: Any, changed: set[str]
) -> None:
    """Refuse (ValidationError, per field) what only a superuser may do: switch on
    ``trust_remote_code``, or change an existing version's backend or endpoint settings.

    ``version`` is the version as stored (None when registering one); ``changed`` the
    fields being written. ``by`` is the person acting; None (code with no person behind
    it: an import, the demo) has no privilege."""
    if _is_superuser(by):
        return
    errors: dict[str, list[str]] = {}
    was_remote_code = version is not None and _remote_code(version.config)
    if "config" in changed and _remote_code(config) and not was_remote_code:
        errors.setdefault("config", []).append(
            "trust_remote_code: only a superuser may switch this on (it runs Python code shipped with the model)."
        )
    if version is not None:
        why = (
            "it is in use (rounds, samples or live turns refer to it)"
            if model_version_in_use(version=version)
            else "it decides where prompts and the API key go"
        )
        advice = f"only a superuser may change this, as {why}; register a new model version instead."
        if "backend" in changed and backend != version.backend:
            errors.setdefault("backend", []).append(f"The backend: {advice}")
        if "config" in changed and backend == version.backend:
            before, after = _endpoint(version.backend, version.config), _endpoint(backend, config)
            for name in sorted(set(before) | set(after)):
                if before.get(name) != after.get(name):
                    errors.setdefault("config", []).append(f"{name}: {advice}")
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def model_version_create(
    *,
    name: str,
    backend: str = Backend.IMPORTED,
    parent: ModelVersion | None = None,
    config: dict[str, Any] | None = None,
    default_sampling: dict[str, Any] | None = None,
    description: str = "",
    by: Any = None,
) -> ModelVersion:
    """Register a checkpoint; unlike ``model_version_get_or_create`` a taken name is an error.

    ``by``: the person registering it (only a superuser may switch on ``trust_remote_code``)."""
    version = ModelVersion(
        name=name.strip(),
        backend=backend,
        parent=parent,
        config=config or {},
        default_sampling=default_sampling or {},
        description=description,
    )
    model_version_privileges_check(version=None, by=by, backend=backend, config=version.config, changed={"config"})
    version.full_clean()
    version.save()
    return version


@transaction.atomic
def model_version_update(*, version: ModelVersion, by: Any, **fields: Any) -> ModelVersion:
    """Change a version. ``by``: the person changing it; the backend, the endpoint settings
    and ``trust_remote_code`` change only by a superuser (``model_version_privileges_check``)."""
    unknown = set(fields) - MODEL_VERSION_EDITABLE_FIELDS
    if unknown:
        # A caller's bug, not a user's mistake: the API's serializers only pass known fields.
        raise TypeError(f"cannot change {', '.join(sorted(unknown))}")
    # Compared with the row as stored (locked), not with ``version``: a form may have
    # written its values onto the instance already.
    stored = ModelVersion.objects.select_for_update().get(pk=version.pk)
    model_version_privileges_check(
        version=stored,
        by=by,
        backend=fields.get("backend", stored.backend),
        config=fields.get("config", stored.config),
        changed=set(fields),
    )
    if "name" in fields:
        fields["name"] = fields["name"].strip()
    if "parent" in fields:
        _check_parent(version, fields["parent"])
    for name, value in fields.items():
        setattr(version, name, value)
    version.full_clean()
    if fields:
        version.save(update_fields=list(fields))
    return version
