"""The admin shows where a comparison, answer or round belongs but does not move it."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from tests.factories import NEW, Builder


def test_the_admin_shows_a_comparisons_round_and_answers_without_fields_to_change_them(client, round_, alice):
    build = Builder(round_)
    comparison = build.comparison()
    build.judge(comparison, alice, NEW)
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "x")
    client.force_login(admin)

    page = client.get(f"/admin/annotation/comparison/{comparison.pk}/change/")
    assert page.status_code == 200
    form_fields = page.context["adminform"].form.fields
    assert not {"round", "prompt", "sample_a", "sample_b"} & set(form_fields)
    assert "is_gold" in form_fields  # what may change still can

    sample = client.get(f"/admin/annotation/sample/{comparison.sample_a_id}/change/")
    assert not {"prompt", "model_version"} & set(sample.context["adminform"].form.fields)
    round_page = client.get(f"/admin/annotation/round/{round_.pk}/change/")
    assert "project" not in round_page.context["adminform"].form.fields

    adding = client.get("/admin/annotation/comparison/add/")
    assert {"round", "sample_a", "sample_b"} <= set(adding.context["adminform"].form.fields)
