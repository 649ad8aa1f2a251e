"""The size limit on uploaded import files (``IMPORT_MAX_BYTES``), for the page and the
API alike, checked before the file is read.

Django reads an upload whole (into memory, or a temporary file past
``FILE_UPLOAD_MAX_MEMORY_SIZE``) as soon as anything asks for the form, before the import
sees a byte of it. So the limit is enforced where the body is read: a request that says
it is longer than the limit allows is refused without reading its body
(``declared_too_big``), and ``SizeLimit``, the first upload handler, drops a file as soon
as more than the limit of it has arrived. It must be in place before anything reads the
form: for the page that means before the CSRF check (``imports/views.py``), for the API
before authentication (a session's CSRF check reads it too, ``imports/apis.py``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest, QueryDict
from django.utils.datastructures import MultiValueDict

# Room beside the file for the form's other fields and the multipart framing.
FORM_ALLOWANCE = 64 * 1024


def size_text(n: int) -> str:
    mib = n / (1024 * 1024)
    return f"{mib:,.0f} MiB" if mib >= 10 else f"{mib:,.1f} MiB" if mib >= 1 else f"{n:,} bytes"


def too_big_message() -> str:
    return (
        f"The file is larger than the import limit of {size_text(settings.IMPORT_MAX_BYTES)} (IMPORT_MAX_BYTES). "
        "Split it into smaller files, or import it with manage.py import_data."
    )


def declared_too_big(request: HttpRequest) -> bool:
    """Whether the request's own length (the file, the other fields and the framing) is
    past the limit; nothing of the body is read."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False  # Django reads no body then
    return length > settings.IMPORT_MAX_BYTES + FORM_ALLOWANCE


class SizeLimit(FileUploadHandler):
    """Passes an upload on to Django's handlers until more than ``IMPORT_MAX_BYTES`` of a
    file has arrived, then drops that file (``exceeded`` says so). A body declared longer
    than the limit allows is not parsed at all."""

    def __init__(self, request: Any = None):
        super().__init__(request)
        self.limit = settings.IMPORT_MAX_BYTES
        self.exceeded = False

    def handle_raw_input(
        self, input_data: Any, META: Any, content_length: int, boundary: Any, encoding: str | None = None
    ) -> tuple[QueryDict, MultiValueDict] | None:
        if content_length > self.limit + FORM_ALLOWANCE:
            self.exceeded = True
            return QueryDict(encoding=encoding), MultiValueDict()
        return None

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > self.limit:
            self.exceeded = True
            raise SkipFile  # Django discards what it has of the file and reads past the rest
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler stores the file


def size_limit_install(request: Any) -> SizeLimit:
    """Put the limit in front of the request's upload handlers; before anything reads the form."""
    handler = SizeLimit(request)
    request.upload_handlers.insert(0, handler)
    return handler
