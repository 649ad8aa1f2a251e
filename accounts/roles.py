"""The three kinds of user, as Django groups with permissions.

Groups are created and given their permissions after every ``migrate`` (``accounts.apps``),
so every deployment has them; a superuser holds every role. Views and API endpoints check
roles through ``has_role`` / the DRF permission classes in ``accounts.permissions``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from django.core.cache import cache
from django.http import HttpRequest


class Role(StrEnum):
    ANNOTATOR = "annotator"
    LEAD = "lead"
    ML_ENGINEER = "ml_engineer"


ROLE_LABELS = {Role.ANNOTATOR: "Annotator", Role.LEAD: "Project lead", Role.ML_ENGINEER: "ML engineer"}

# Model permissions each role's group holds (app_label.codename), applied after every migrate.
ROLE_PERMISSIONS: dict[Role, list[str]] = {
    Role.ANNOTATOR: ["annotation.add_judgment", "annotation.add_edit", "annotation.view_project"],
    Role.LEAD: [
        "annotation.view_project",
        "annotation.add_project",
        "annotation.change_project",
        "annotation.view_round",
        "annotation.add_round",
        "annotation.change_round",
        "annotation.view_prompt",
        "annotation.add_prompt",
        "annotation.view_sample",
        "annotation.add_sample",
        "annotation.view_comparison",
        "annotation.add_comparison",
        "annotation.view_judgment",
        "annotation.view_assignment",
        "annotation.view_edit",
        "models_service.view_modelversion",
        "models_service.add_modelversion",
        "models_service.change_modelversion",
    ],
    Role.ML_ENGINEER: [
        "annotation.view_project",
        "annotation.view_round",
        "annotation.view_prompt",
        "annotation.view_sample",
        "annotation.view_comparison",
        "annotation.view_judgment",
        "annotation.view_edit",
        "annotation.add_sample",
        "annotation.add_prompt",
        "models_service.view_modelversion",
        "models_service.add_modelversion",
        "models_service.change_modelversion",
    ],
}


ROLES_CACHE_SECONDS = 300


def _roles_key(user_id: int) -> str:
    return f"roles:{user_id}"


def user_roles(user: Any) -> set[Role]:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return set()
    if user.is_superuser:
        return set(Role)
    cached = getattr(user, "_prefdata_roles", None)
    if cached is None:
        # Every request checks roles: keep them in the cache (Redis in production), not a
        # groups query per request. Changes of a user's groups drop the entry (accounts/apps.py).
        names = cache.get(_roles_key(user.pk))
        if names is None:
            names = list(user.groups.values_list("name", flat=True))
            cache.set(_roles_key(user.pk), names, ROLES_CACHE_SECONDS)
        cached = {role for role in Role if role.value in names}
        user._prefdata_roles = cached
    return cached


def roles_forget(user_ids) -> None:
    cache.delete_many([_roles_key(pk) for pk in user_ids])


def has_role(user: Any, *roles: Role) -> bool:
    """True when the user holds any of ``roles``."""
    return bool(user_roles(user) & set(roles))


def roles_context(request: HttpRequest) -> dict[str, Any]:
    roles = user_roles(getattr(request, "user", None))
    return {
        "is_annotator": Role.ANNOTATOR in roles,
        "is_lead": Role.LEAD in roles,
        "is_ml_engineer": Role.ML_ENGINEER in roles,
        "role_labels": [ROLE_LABELS[r] for r in Role if r in roles],
    }
