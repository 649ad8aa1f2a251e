"""Bounds on what clients send (core/limits.py): ids in URLs, JSON depth, text a database
cannot store."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.converters import IntConverter

from core.limits import JSON_MAX_DEPTH, MAX_ID, NUL_MESSAGE, SURROGATE_MESSAGE, IdConverter, json_problem
from tests.annotation.test_api_annotate import next_pair
from tests.annotation.test_assignment import fill
from tests.conftest import token_client


def _patterns(resolver: URLResolver, prefix: str = ""):
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _patterns(entry, route)
        elif isinstance(entry, URLPattern):
            yield route, entry.pattern.converters


def test_every_integer_in_a_url_goes_through_the_bounded_id_converter():
    unbounded = [
        route
        for route, converters in _patterns(get_resolver())
        if any(isinstance(c, IntConverter) and not isinstance(c, IdConverter) for c in converters.values())
    ]
    assert unbounded == []
    assert any("<id:" in route for route, _ in _patterns(get_resolver()))


def test_the_id_converter_takes_what_a_64_bit_column_holds_and_nothing_more():
    converter = IdConverter()
    assert converter.to_python(str(MAX_ID)) == MAX_ID
    with pytest.raises(ValueError):
        converter.to_python(str(MAX_ID + 1))


@pytest.fixture
def assignment(round_, alice):
    round_.project.require_safety = False
    round_.project.save()
    fill(round_, 1)
    return next_pair(token_client(alice), round_.project)["pair"]["assignment"]


@pytest.mark.parametrize("number", [MAX_ID, MAX_ID + 1, 2**64, 10**30])
def test_an_id_out_of_range_is_a_404_on_the_api_and_the_pages(alice, lee, round_, assignment, client, number):
    # SQLite cannot bind an integer past 64 bits: these were 500s there.
    api = token_client(alice)
    for path in (f"/api/v1/assignments/{number}/judgment/", f"/api/v1/assignments/{number}/skip/"):
        response = api.post(path, {"choice": "left", "strength": "slightly", "reason": "x"}, format="json")
        assert response.status_code == 404, (path, response.content)
        assert response.headers["Content-Type"] == "application/json"
    for path in (f"/api/v1/rounds/{number}/", f"/api/v1/prompts/{number}/", f"/api/v1/exports/{number}/"):
        assert token_client(lee).get(path).status_code == 404
    client.force_login(alice)
    slug = round_.project.slug
    for path in (f"/annotate/{slug}/assignments/{number}/submit/", f"/annotate/{slug}/assignments/{number}/skip/"):
        status = client.post(path, {"choice": "left", "strength": "slightly", "reason": "x"}).status_code
        # An id a column can hold reaches the page, which sends the annotator back to work.
        assert status == 404 if number > MAX_ID else status in (302, 404)
    client.force_login(lee)
    assert client.get(f"/projects/{slug}/rounds/{number}/pairs/").status_code == 404


def test_json_problems_name_their_field():
    assert json_problem({"a": [{"b": "fine"}, {"c": "x\x00"}]}) == ("a.1.c", NUL_MESSAGE)
    assert json_problem({"a": "\ud800"}) == ("a", SURROGATE_MESSAGE)
    assert json_problem({"a": {"k\x00": 1}})[0] == "a"
    assert json_problem("\x00") == ("", NUL_MESSAGE)
    assert json_problem({"a": [1.5, None, True, "caf\u00e9 \U0001f600"]}) is None


def test_nesting_is_counted_from_the_value_itself():
    def nested(depth: int):
        value: list = []
        for _ in range(depth - 1):
            value = [value]
        return value

    assert json_problem(nested(JSON_MAX_DEPTH)) is None
    assert json_problem(nested(JSON_MAX_DEPTH + 1)) == (
        "0" + ".0" * (JSON_MAX_DEPTH - 1),
        f"nests deeper than {JSON_MAX_DEPTH} levels",
    )
    assert json_problem(nested(100_000)) is not None  # walked without recursion
