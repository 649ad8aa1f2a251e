"""Outside annotators named in imported labels (accounts/services.py)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from accounts.services import external_annotator_get_or_create

User = get_user_model()
pytestmark = pytest.mark.django_db


def test_names_that_share_a_slug_are_different_annotators():
    names = ["acme:W7", "acme:w7", "acme-w7", "Zoë", "Zoe", "a.b", "ab", "!!", "??"]
    users = [external_annotator_get_or_create(name=name) for name in names]
    assert len({u.pk for u in users}) == len(names)
    assert [u.first_name for u in users] == names
    assert all(not u.is_active and not u.has_usable_password() for u in users)


def test_the_same_name_is_the_same_annotator_every_time_whatever_came_between():
    first = external_annotator_get_or_create(name="acme:w7")
    external_annotator_get_or_create(name="acme:W7")
    assert external_annotator_get_or_create(name="acme:w7").pk == first.pk
    assert external_annotator_get_or_create(name="acme:W7").pk != first.pk
    assert User.objects.count() == 2


def test_usernames_stay_readable():
    assert external_annotator_get_or_create(name="vendor").username == "ext.vendor"
    assert external_annotator_get_or_create(name="acme:w7").username == "ext.acme-w7"
    second = external_annotator_get_or_create(name="acme:W7").username
    assert second.startswith("ext.acme-w7.") and len(second) == len("ext.acme-w7.") + 8


def test_annotators_made_by_the_earlier_rule_are_found_by_their_name():
    # The earlier rule: ext.<slug> for any name, the name as the first name.
    old = User.objects.create(username="ext.acme-w7", first_name="acme:W7", is_active=False)
    assert external_annotator_get_or_create(name="acme:W7").pk == old.pk
    other = external_annotator_get_or_create(name="acme:w7")
    assert other.pk != old.pk and other.first_name == "acme:w7"


def test_long_names_that_share_their_first_150_characters_are_different_annotators():
    start = "acme:" + "x" * 160
    a = external_annotator_get_or_create(name=start + "a")
    b = external_annotator_get_or_create(name=start + "b")
    assert a.pk != b.pk
    assert external_annotator_get_or_create(name=start + "a").pk == a.pk
    assert len(a.username) <= 150 and a.first_name == (start + "a")[:150]
