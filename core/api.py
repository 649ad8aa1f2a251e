"""The REST API's shared plumbing: the base view, pagination, the error handler and 404s.

Every API view has the same shape (docs/style.md): access check (the permission classes
declared per method, then the object look-up) -> input serializer -> service or selector
-> output serializer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView, set_rollback
from rest_framework.views import exception_handler as drf_exception_handler

from core.text import VALID_ROLES

T = TypeVar("T")


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus: Django's ValidationError (raised by services) and IntegrityError
    (a database constraint refused the write) become 400 responses instead of 500s."""
    if isinstance(exc, DjangoValidationError):
        detail = serializers.as_serializer_error(exc)
        if NON_FIELD_ERRORS in detail:  # full_clean's "__all__" reads better as DRF's key
            detail[api_settings.NON_FIELD_ERRORS_KEY] = detail.pop(NON_FIELD_ERRORS)
        set_rollback()
        return Response(detail, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, IntegrityError):
        set_rollback()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        return Response(
            {
                "detail": "The database refused the change: it conflicts with data already stored "
                "or breaks one of its rules.",
                "reason": reason,
            },
            status=status.HTTP_400_BAD_REQUEST,
        )
    return drf_exception_handler(exc, context)


class ApiPagination(LimitOffsetPagination):
    max_limit = 1000


class BaseApi(APIView):
    # Permissions are declared per HTTP method: ``permissions = {"GET": IsAnyRole,
    # "POST": IsLead}``; HEAD and OPTIONS follow GET. A method left out needs only a
    # logged-in user (and then gets its 405). No docstring here on purpose: the
    # schema would show it on every view that has none of its own.

    permissions: ClassVar[Mapping[str, type[BasePermission]]] = {}
    pagination_class = ApiPagination

    def get_permissions(self) -> list[BasePermission]:
        method = self.request.method if self.request is not None else "GET"
        if method in ("HEAD", "OPTIONS"):
            method = "GET"
        role = self.permissions.get(method or "GET")
        # IsAuthenticated first: without credentials the answer is 401, not 403.
        return [IsAuthenticated()] + ([role()] if role and role is not IsAuthenticated else [])

    def paginated(self, queryset: Any, serializer_class: type[serializers.BaseSerializer], **context: Any) -> Response:
        paginator = ApiPagination()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        data = serializer_class(page, many=True, context={"request": self.request, **context}).data
        return paginator.get_paginated_response(data)


def get_or_404(obj: T | None, what: str) -> T:
    """``obj``, or a 404 naming what was not found (selectors return None for "no such row")."""
    if obj is None:
        raise NotFound(f"No such {what}.")
    return obj


class MessageSerializer(serializers.Serializer):
    """One message of a conversation."""

    role = serializers.ChoiceField(choices=sorted(VALID_ROLES))
    content = serializers.CharField()

    class Meta:
        ref_name = "Message"
