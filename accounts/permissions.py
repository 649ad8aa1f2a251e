"""DRF permission classes: one per role (a superuser passes every check), and where token
management may come from."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import BasePermission

from accounts.models import ApiToken
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


def _from_session(request: Any) -> bool:
    # Positively a browser session: a token, or any scheme added later, is not one.
    return bool(request.user and request.user.is_authenticated) and isinstance(
        request.successful_authenticator, SessionAuthentication
    )


class FromSession(BasePermission):
    """API tokens are listed and created from a logged-in browser session, never with a
    token: a leaked key must not learn of its siblings or mint keys that outlive it."""

    message = (
        "API tokens are managed from a logged-in browser session (log in, then use /api/v1/tokens/ "
        "in the browser), not with a token."
    )

    def has_permission(self, request: Any, view: Any) -> bool:
        return _from_session(request)


class FromSessionOrThisToken(BasePermission):
    """Revoking: from a logged-in session any of one's tokens; with a token, only itself."""

    message = "A token may revoke only itself; revoke other tokens from a logged-in browser session."

    def has_permission(self, request: Any, view: Any) -> bool:
        if _from_session(request):
            return True
        token = request.auth
        return isinstance(token, ApiToken) and str(token.pk) == str(view.kwargs.get("pk"))
