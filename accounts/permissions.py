"""DRF permission classes, one per role (a superuser passes every check)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from accounts.roles import Role, has_role


class _RolePermission(BasePermission):
    roles: tuple[Role, ...] = ()
    message = "This needs one of the roles: {roles}."

    def has_permission(self, request: Any, view: Any) -> bool:
        allowed = has_role(request.user, *self.roles)
        if not allowed:
            self.message = f"This needs one of the roles: {', '.join(r.value for r in self.roles)}."
        return allowed


class IsLead(_RolePermission):
    roles = (Role.LEAD,)


class IsLeadOrMLEngineer(_RolePermission):
    roles = (Role.LEAD, Role.ML_ENGINEER)


class IsAnnotator(_RolePermission):
    roles = (Role.ANNOTATOR,)


class IsAnyRole(_RolePermission):
    roles = (Role.ANNOTATOR, Role.LEAD, Role.ML_ENGINEER)
