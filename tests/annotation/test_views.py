"""The server-rendered pages: login, home, project overview, pair browser, import, health."""

from __future__ import annotations

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.models import Round
from imports.services import ImportKind, ImportOptions, import_run
from tests.conftest import PASSWORD, tags_of

LLMBAR = [
    {"input": "Name a prime number.", "output_1": "7 is prime.", "output_2": "8 is prime.", "label": 1},
    {"input": "What is 2+2?", "output_1": "5", "output_2": "**4**", "label": 2},
]


def llmbar_file(records=LLMBAR, name="llmbar.json") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, json.dumps(records, indent=2).encode(), content_type="application/json")


def import_pairs(project, records, source="test") -> Round:
    data = "\n".join(json.dumps(r) for r in records).encode()
    report = import_run(
        stream=io.BytesIO(data),
        filename="pairs.jsonl",
        options=ImportOptions(kind=ImportKind.PAIRS, project=project, source=source),
    )
    assert report.committed, report.errors
    return Round.objects.get(pk=report.round_id)


def pairs_url(round_) -> str:
    return reverse("round-pairs", args=[round_.project.slug, round_.number])


# --- Login, logout and access ------------------------------------------------------------


def test_login_works_and_lands_on_home(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("home")
    assert client.get(reverse("home")).status_code == 200


def test_login_with_a_wrong_password_fails(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert b"enter a correct username and password" in response.content


def test_logout_needs_a_post(client, alice):
    client.force_login(alice)
    assert client.get(reverse("logout")).status_code == 405
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("name", ["home", "project-detail", "project-import", "round-pairs", "import-start"])
def test_anonymous_users_are_redirected_to_login(client, round_, name):
    args = {"home": [], "import-start": [], "round-pairs": [round_.project.slug, round_.number]}.get(
        name, [round_.project.slug]
    )
    url = reverse(name, args=args)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


# --- Home and project ----------------------------------------------------------------


@pytest.mark.parametrize("user", ["alice", "lee", "maya"])
def test_home_lists_the_project_for_each_role(client, round_, user, request):
    client.force_login(request.getfixturevalue(user))
    response = client.get(reverse("home"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Helpfulness v1" in html
    assert reverse("project-detail", args=[round_.project.slug]) in html
    # annotators judge blind: they see "Round 1", never the model names in the round's name
    assert (str(round_) if user != "alice" else f"Round {round_.number}") in html


def test_home_shows_each_role_its_own_links(client, alice, lee, maya, project):
    client.force_login(alice)
    html = client.get(reverse("home")).content.decode()
    assert "Annotate" in html and reverse("import-start") not in html and reverse("api-docs") not in html
    client.force_login(lee)
    html = client.get(reverse("home")).content.decode()
    assert reverse("import-start") in html and reverse("api-docs") not in html
    client.force_login(maya)
    html = client.get(reverse("home")).content.decode()
    assert reverse("api-docs") in html and reverse("import-start") not in html


def test_home_shows_the_progress_of_each_round(client, lee, project):
    round_ = import_pairs(project, LLMBAR + [{"input": "Say hi.", "output_1": "hi", "output_2": "hello"}])
    client.force_login(lee)
    response = client.get(reverse("home"))
    rounds = response.context["projects"][0].rounds_with_progress
    assert [
        (r.pk, r.comparison_count, r.judgment_count, r.comparisons_complete, r.percent_complete) for r in rounds
    ] == [(round_.pk, 3, 2, 2, 66)]
    assert "66%" in response.content.decode()


def test_a_user_without_a_role_sees_no_projects(client, project, charlie):
    client.force_login(charlie)
    response = client.get(reverse("home"))
    assert response.status_code == 200
    assert "Helpfulness v1" not in response.content.decode()
    assert client.get(reverse("project-detail", args=[project.slug])).status_code == 403


def test_the_project_page_renders_guidelines_as_markdown(client, alice, round_):
    client.force_login(alice)
    response = client.get(reverse("project-detail", args=[round_.project.slug]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Pick the <strong>better</strong> answer." in html
    assert f"Round {round_.number}" in html and "chat-v1" not in html
    assert 'enctype="multipart/form-data"' not in html  # annotators get no import form
    assert pairs_url(round_) not in html


def test_the_project_page_offers_leads_the_import_form(client, lee, round_):
    client.force_login(lee)
    html = client.get(reverse("project-detail", args=[round_.project.slug])).content.decode()
    import_url = reverse("project-import", args=[round_.project.slug])
    loader = next(attrs for tag, attrs in tags_of(html) if attrs.get("hx-get") == import_url)
    assert loader["hx-trigger"] == "load"  # the imports app's form, fetched into the sidebar
    assert pairs_url(round_) in html
    fragment = client.get(import_url, HTTP_HX_REQUEST="true").content.decode()
    assert 'enctype="multipart/form-data"' in fragment and "<html" not in fragment


def test_an_unknown_project_is_404(client, alice, db):
    client.force_login(alice)
    assert client.get(reverse("project-detail", args=["nope"])).status_code == 404


# --- Pair browser --------------------------------------------------------------------


def test_the_pair_browser_is_forbidden_to_an_annotator(client, alice, project):
    round_ = import_pairs(project, LLMBAR)
    client.force_login(alice)
    assert client.get(pairs_url(round_)).status_code == 403


@pytest.mark.parametrize("user", ["lee", "maya"])
def test_the_pair_browser_shows_both_answers(client, project, user, request):
    round_ = import_pairs(project, LLMBAR)
    client.force_login(request.getfixturevalue(user))
    response = client.get(pairs_url(round_))
    html = response.content.decode()
    assert response.status_code == 200
    assert "7 is prime." in html and "8 is prime." in html
    assert "<strong>4</strong>" in html
    assert "model-a" in html and "model-b" in html


def test_the_pair_browser_shows_a_conversation_as_a_dialogue(client, lee, project):
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello, how can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ]
    round_ = import_pairs(project, [{"prompt": conversation, "response_a": "No.", "response_b": "Knock knock."}])
    client.force_login(lee)
    html = client.get(pairs_url(round_)).content.decode()
    for role in ("turn-system", "turn-user", "turn-assistant"):
        assert role in html
    assert html.index("Be brief.") < html.index("Hello, how can I help?") < html.index("Tell me a joke.")


def test_model_text_with_script_and_onerror_never_becomes_live_html(client, lee, project):
    evil = "<script>alert(1)</script> and <img src=x onerror=alert(1)>"
    round_ = import_pairs(
        project, [{"input": f"Repeat: {evil}", "output_1": evil, "output_2": f"```html\n{evil}\n```"}]
    )
    client.force_login(lee)

    fragment = client.get(pairs_url(round_), HTTP_HX_REQUEST="true").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in fragment
    assert "<script" not in fragment
    assert not [(t, a) for t, a in tags_of(fragment) if t == "img" or any(n.startswith("on") for n in a)]

    page = client.get(pairs_url(round_)).content.decode()
    scripts = [attrs for tag, attrs in tags_of(page) if tag == "script"]
    assert scripts == [{"src": "/static/vendor/htmx.min.js", "defer": None}]
    assert not [(t, a) for t, a in tags_of(page) if any(n.startswith("on") for n in a)]


def test_the_pair_browser_loads_more_pairs_with_htmx(client, lee, project):
    records = [{"input": f"Question {i}?", "output_1": f"a{i}", "output_2": f"b{i}"} for i in range(25)]
    round_ = import_pairs(project, records)
    client.force_login(lee)

    first = client.get(pairs_url(round_))
    html = first.content.decode()
    assert html.count('class="card pair"') == 20
    assert f'hx-get="{pairs_url(round_)}?page=2"' in html
    assert "HX-Request" in first["Vary"]

    more = client.get(pairs_url(round_), {"page": 2}, HTTP_HX_REQUEST="true")
    fragment = more.content.decode()
    assert more.status_code == 200
    assert "<html" not in fragment and "<nav" not in fragment
    assert fragment.count('class="card pair"') == 5
    assert "Question 24?" in fragment
    assert "Load more" not in fragment


def test_the_pair_browser_needs_the_same_few_queries_for_any_page_size(
    client, lee, project, django_assert_max_num_queries
):
    round_ = import_pairs(project, [{"input": f"Q{i}?", "output_1": f"a{i}", "output_2": f"b{i}"} for i in range(20)])
    url = pairs_url(round_)
    client.force_login(lee)
    # session, user, groups, project, round with its counts, count, one page with prompts and samples
    with django_assert_max_num_queries(7):
        assert client.get(url).status_code == 200
    with django_assert_max_num_queries(5):
        assert client.get(reverse("home")).status_code == 200


def test_the_pair_browser_refuses_a_bad_page_number(client, lee, project):
    round_ = import_pairs(project, LLMBAR)
    client.force_login(lee)
    assert client.get(pairs_url(round_), {"page": "x"}).status_code == 400
    assert client.get(pairs_url(round_), {"page": 9}).status_code == 404


def test_the_pair_browser_of_an_unknown_round_is_404(client, lee, project):
    client.force_login(lee)
    assert client.get(reverse("round-pairs", args=[project.slug, 99])).status_code == 404
