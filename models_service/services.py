"""Writes about model versions (checkpoints): register, change, and find-or-create the
imported ones that files name. A version's backend settings and default sampling
parameters are checked against the backend's typed schema (``ModelVersion.clean``).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from models_service.models import Backend, ModelVersion

MODEL_VERSION_EDITABLE_FIELDS = frozenset({"name", "parent", "backend", "config", "default_sampling", "description"})


def model_version_get_or_create(*, name: str, backend: str = Backend.IMPORTED, **fields: Any) -> ModelVersion:
    """The version of this name, created (imported unless told otherwise) when missing."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A model version needs a name."})
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
    unknown = set(fields) - MODEL_VERSION_EDITABLE_FIELDS
    if unknown:
        # A caller's bug, not a user's mistake: the API's serializers only pass known fields.
        raise TypeError(f"cannot change {', '.join(sorted(unknown))}")
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
