"""The REST API's JSON parser (``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``).

A module of its own: DRF imports the parser classes while it defines ``APIView``, which
``core.api`` builds on.
"""

from __future__ import annotations

from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser as DrfJSONParser
from rest_framework.utils import json

from core.limits import JSON_MAX_DEPTH, json_problem, json_text_may_need_walk


class JSONParser(DrfJSONParser):
    """DRF's JSON parser (strict: no NaN or Infinity), refusing with a 400 what would
    otherwise fail later as a 500: nesting deeper than ``core.limits.JSON_MAX_DEPTH``
    (Python's parser recurses, and so do serializers), and text no database column can
    hold (a NUL character anywhere, half of a surrogate pair), named by its field. The
    body's size is bounded before it is parsed: DRF reads JSON through ``request.body``,
    which refuses more than ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (a 413 from
    ``core.api.exception_handler``)."""

    def parse(self, stream: IO[Any], media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read()
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        try:
            text = raw.decode(encoding)
            data = json.loads(text, parse_constant=json.strict_constant if self.strict else None)
        except LookupError as exc:
            raise ParseError(f"Unsupported charset {encoding!r} in the request's Content-Type header.") from exc
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a NaN
            raise ParseError(f"JSON parse error - {exc}") from exc
        except RecursionError as exc:
            raise ParseError(f"JSON parse error - nested deeper than {JSON_MAX_DEPTH} levels") from exc
        if json_text_may_need_walk(raw):
            problem = json_problem(data)
            if problem is not None:
                field, reason = problem
                raise ParseError(f"JSON parse error - {field or 'the body'} {reason}")
        return data
