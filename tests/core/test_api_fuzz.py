"""The API fuzzed from its own OpenAPI schema (schemathesis): whatever a client sends, as
any role or none, the answer is never a server error.

Requests are generated from /api/schema/'s operations and parameters (valid and invalid
values both), sent to the WSGI application in-process, against a project with rounds,
comparisons and judgments. Bounded and derandomized so that CI runs the same examples
every time; FUZZ_EXAMPLES raises the count for a longer local run.
"""

from __future__ import annotations

import json
import os

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, given, settings

from tests.conftest import token_client
from tests.factories import BAD, NEW, OLD, TIE, Builder

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))

pytestmark = pytest.mark.django_db


def api_schema():
    raw = SchemaGenerator().get_schema(request=None, public=True)
    schema = schemathesis.openapi.from_dict(json.loads(OpenApiJsonRenderer().render(raw)))
    schema.app = get_wsgi_application()
    return schema


def credentials(user) -> dict[str, str]:
    return {"Authorization": token_client(user)._credentials["HTTP_AUTHORIZATION"]}


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """What Django's test client does: requests must not close the connection that holds
    the test's transaction (the WSGI handler closes old connections at each request)."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def judged_round(round_, alice, bob):
    build = Builder(round_)
    for verdict in (NEW, OLD, TIE, BAD):
        comparison = build.comparison()
        build.judge(comparison, alice, verdict)
        build.judge(comparison, bob, NEW)
    build.comparison()
    return round_


def fuzz_one(
    operation,
    role: str,
    headers: dict[str, str],
    failures: list[str],
    *,
    examples: int,
    real: dict[str, object] | None = None,
) -> None:
    """``real``: path parameters to use instead of generated ones (existing objects)."""

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def fuzz(case):
        if real is not None:
            case.path_parameters = {**(case.path_parameters or {}), **real}
        response = case.call(headers=headers)
        if response.status_code >= 500:
            failures.append(
                f"{role}: {case.method} {case.formatted_path} -> {response.status_code} "
                f"(query={case.query!r}, body={str(case.body)[:200]!r}): {response.text[:200]!r}"
            )

    fuzz()


def real_objects(path: str, ids: dict[str, int | str]) -> dict[str, object]:
    """Path parameters naming objects that exist, chosen by the path's first segment."""
    parts = path.strip("/").split("/")
    first = parts[2] if len(parts) > 2 and parts[:2] == ["api", "v1"] else parts[0]
    params: dict[str, object] = {}
    if "{slug}" in path:
        params["slug"] = ids["project"]
    if "{id}" in path and first in ids:
        params["id"] = ids[first]
    if "{name}" in path:
        params["name"] = "manifest.json"
    return params


def test_no_api_operation_answers_a_server_error_whoever_asks(judged_round, lee, maya, alice, charlie):
    from annotation.assignment import assignment_next
    from annotation.models import Comparison, Sample
    from rlhf_export.services import export_job_create

    comparison = Comparison.objects.filter(round=judged_round).first()
    export = export_job_create(project=judged_round.project, kind="dpo", created_by=maya)
    ids: dict[str, int | str] = {
        "project": judged_round.project.slug,
        "rounds": judged_round.pk,
        "prompts": comparison.prompt_id,
        "comparisons": comparison.pk,
        "samples": Sample.objects.values_list("pk", flat=True).first(),
        "model-versions": judged_round.candidate_id,
        "assignments": assignment_next(annotator=alice, project=judged_round.project).pk,
        "exports": export.pk,
    }
    roles = {
        "lead": credentials(lee),
        "ml_engineer": credentials(maya),
        "annotator": credentials(alice),
        "no role": credentials(charlie),
        "anonymous": {},
    }
    failures: list[str] = []
    operations = [result.ok() for result in api_schema().get_all_operations()]
    assert len(operations) > 30  # the schema was read

    for operation in operations:
        real = real_objects(operation.path, ids)
        for role, headers in roles.items():
            if role in ("no role", "anonymous"):  # turned away before anything is read
                fuzz_one(operation, role, headers, failures, examples=2)
                continue
            fuzz_one(operation, role, headers, failures, examples=max(1, EXAMPLES // 3))
            fuzz_one(operation, role, headers, failures, examples=EXAMPLES, real=real)

    assert failures == [], "\n".join(failures[:40])
