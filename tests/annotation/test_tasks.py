"""The periodic lease reclaim frees abandoned slots even when nobody asks for work."""

from __future__ import annotations

from django.conf import settings

from annotation.models import AssignmentStatus, Comparison
from annotation.tasks import reclaim_expired_leases
from tests.annotation.test_assignment import claim, expire, fill


def test_the_periodic_task_frees_the_slot_of_an_abandoned_lease(project, round_, alice):
    [comparison] = fill(round_, 1)
    abandoned = claim(alice, project)
    expire(abandoned.pk)
    assert reclaim_expired_leases.delay().get() == 1
    abandoned.refresh_from_db()
    assert abandoned.status == AssignmentStatus.EXPIRED
    assert Comparison.objects.get(pk=comparison.pk).taken == 0
    assert reclaim_expired_leases.delay().get() == 0


def test_a_live_lease_is_left_alone_by_the_periodic_task(project, round_, alice):
    fill(round_, 1)
    live = claim(alice, project)
    assert reclaim_expired_leases.delay().get() == 0
    live.refresh_from_db()
    assert live.status == AssignmentStatus.ACTIVE


def test_the_reclaim_task_is_scheduled_on_the_default_queue():
    entry = settings.CELERY_BEAT_SCHEDULE["reclaim-expired-leases"]
    assert entry["task"] == reclaim_expired_leases.name
    assert entry["options"]["queue"] == "default"
    assert 1 <= entry["schedule"] <= 60
