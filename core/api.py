"""The REST API's shared plumbing: the base view, pagination, the error handler and 404s
(the JSON parser is ``core.parsers``).

Every API view has the same shape (docs/style.md): access check (the permission classes
declared per method, then the object look-up) -> input serializer -> service or selector
-> output serializer.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.signals import got_request_exception
from django.db import DatabaseError, DataError, IntegrityError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.views import defaults
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


logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = "The database is unreachable or busy: nothing was changed. Try again in a moment."


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus JSON for everything else an API view can raise:

    - Django's ValidationError (raised by services) -> 400 with an error per field;
    - a body larger than Django takes (``DATA_UPLOAD_MAX_MEMORY_SIZE``) -> 413, too many
      form fields or files -> 400;
    - IntegrityError or DataError (the database refused a value) -> 400 saying so;
    - any other database error (unreachable, restarting, a deadlock) -> 503;
    - anything else -> 500, logged with its traceback, with no detail of the server's.
    """
    if isinstance(exc, DjangoValidationError):
        detail = serializers.as_serializer_error(exc)
        if NON_FIELD_ERRORS in detail:  # full_clean's "__all__" reads better as DRF's key
            detail[api_settings.NON_FIELD_ERRORS_KEY] = detail.pop(NON_FIELD_ERRORS)
        set_rollback()
        return Response(detail, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"detail": f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes."},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, (IntegrityError, DataError)):
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
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    request = context.get("request")
    if isinstance(exc, DatabaseError):
        logger.warning("API %s: database error: %s", getattr(request, "path", "?"), exc)
        return Response(
            {"detail": DATABASE_UNAVAILABLE}, status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "5"}
        )
    logger.error("API %s: unexpected error", getattr(request, "path", "?"), exc_info=exc)
    # What Django does for an error it catches itself: error reporting hooks (and the test
    # client, which raises it in the test) hear of it.
    got_request_exception.send(sender=None, request=getattr(request, "_request", request))
    return Response({"detail": "Internal error: it has been logged."}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404s: JSON under /api/, Django's page elsewhere."""
    if _wants_json(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """Errors that reach Django (outside an API view, or in middleware): JSON under /api/.

    A database that is restarting or unreachable (the session look-up of every page fails
    first) is a 503 with Retry-After, not a 500: nothing was changed and asking again in
    a few seconds works. Django calls this while handling the error, so it is at hand."""
    error = sys.exc_info()[1]
    if isinstance(error, (OperationalError, InterfaceError)):
        if _wants_json(request):
            response: HttpResponse = JsonResponse({"detail": DATABASE_UNAVAILABLE}, status=503)
        else:
            response = HttpResponse(loader.get_template("503.html").render(), status=503)
        response["Retry-After"] = "5"
        return response
    if _wants_json(request):
        return JsonResponse({"detail": "Internal error: it has been logged."}, status=500)
    return defaults.server_error(request)


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
