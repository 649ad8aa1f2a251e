"""The assignment engine: who judges what next, under leases, without double-booking.

Each comparison has ``required_judgments`` slots (the project's overlap k). A slot is
*taken* by a live lease or a judgment; ``Comparison.taken`` counts them and moves in the
same transaction as the assignment row, so the counter and the rows never disagree.

Claiming (``assignment_next``):
1. an annotator who still holds a live lease gets it back (a reload, a second tab);
2. otherwise, with the project's gold rate, a gold item they have not seen;
3. otherwise a comparison from an open round that has a free slot and that they have
   never been assigned: first those already partly taken (finish what was started),
   then untouched ones.

On PostgreSQL the candidate row is locked with ``FOR UPDATE SKIP LOCKED``, so concurrent
claims never wait on each other and never take the same slot. Each claim starts its scan
at a random point of the pool (wrapping round), so 50 annotators spread over the pool
instead of all fighting for the lowest id. On SQLite, transactions are IMMEDIATE
(settings), so claims are serialised and the same code is correct.

Expired leases are reclaimed lazily before each claim (and by ``assignments_reclaim_expired``
from a periodic task): the assignment becomes ``expired`` and its slot is freed.
"""

from __future__ import annotations

import random
import secrets
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Max, Min
from django.utils import timezone

from annotation.models import Assignment, AssignmentStatus, Comparison, Project, Round, RoundStatus, Side

# The longest reason a skip may give.
SKIP_REASON_MAX_CHARS = 500

# How many leases one annotator may hold at once: the pair on screen and the one
# prefetched behind it.
MAX_LIVE_LEASES = 2


class Refusal(StrEnum):
    """Why a submission or skip was refused: the one list pages and API answer from."""

    FOREIGN = "foreign"  # no such assignment, or someone else's: reads as missing (404)
    STALE = "stale"  # judged or skipped already, or the lease ran out and the pair went to someone else
    CLOSED = "closed"  # the round was closed
    REASON = "reason"  # a skip needs a reason
    INVALID = "invalid"  # the verdict breaks a rule of the project (field errors)

    @property
    def gone(self) -> bool:
        """This pair cannot be judged any more: move on to the next one."""
        return self in (Refusal.FOREIGN, Refusal.STALE, Refusal.CLOSED)

    @property
    def http_status(self) -> int:
        return {Refusal.FOREIGN: 404, Refusal.STALE: 409, Refusal.CLOSED: 409}.get(self, 400)


class AssignmentRefused(ValidationError):
    """A submission or skip that cannot be accepted; the message says why, ``refusal`` what kind."""

    @property
    def refusal(self) -> Refusal:
        if hasattr(self, "error_dict"):
            return Refusal.INVALID
        return Refusal(self.error_list[0].code or Refusal.INVALID)


@dataclass(frozen=True)
class NoWork:
    """Why there is nothing to hand out, in words for the annotator."""

    reason: str
    retry_after_seconds: int | None = None


# --- Claiming ----------------------------------------------------------------------


def open_rounds_key(project_id: int) -> str:
    return f"assignment:open-rounds:{project_id}"


def _open_round_ids(project: Project) -> list[int]:
    # Cached briefly: asked on every claim, changed only when a lead opens or closes a
    # round (round_open / round_close drop the entry; submissions re-check the status).
    key = open_rounds_key(project.pk)
    ids = cache.get(key)
    if ids is None:
        ids = list(
            Round.objects.filter(project=project, status=RoundStatus.OPEN).order_by("id").values_list("id", flat=True)
        )
        cache.set(key, ids, 30)
    return ids


_LIVE_LEASES_SQL = (
    'SELECT a.id, a.comparison_id, a.annotator_id, a."left", a.status, a.leased_at, a.lease_expires_at, '
    "a.completed_at, a.skip_reason "
    "FROM annotation_assignment a "
    "JOIN annotation_comparison c ON c.id = a.comparison_id "
    "JOIN annotation_round r ON r.id = c.round_id "
    "WHERE a.annotator_id = %s AND a.status = %s AND a.lease_expires_at > %s "
    "AND r.project_id = %s AND r.status = %s "
    f"ORDER BY a.leased_at, a.id LIMIT {MAX_LIVE_LEASES + 1}"
)


def _live_leases(annotator, project: Project, now) -> list[Assignment]:
    # A raw query: asked on every "next", and the ORM spent more CPU building it than
    # the database spent answering it (the annotator's assignment index has the rows).
    now_db = Assignment._meta.get_field("lease_expires_at").get_db_prep_value(now, connection)
    return list(
        Assignment.objects.raw(
            _LIVE_LEASES_SQL, [annotator.pk, AssignmentStatus.ACTIVE, now_db, project.pk, RoundStatus.OPEN]
        )
    )


def _id_range(round_id: int) -> tuple[int, int] | None:
    """The id range of a round's comparisons, cached: it only spreads the scans' starts."""
    key = f"assignment:id-range:{round_id}"
    cached = cache.get(key)
    if cached is None:
        bounds = Comparison.objects.filter(round_id=round_id).aggregate(low=Min("id"), high=Max("id"))
        if bounds["low"] is None:
            return None
        cached = (bounds["low"], bounds["high"])
        cache.set(key, cached, 60)
    return cached


# At most this many pool rows are looked at per scan: an annotator fast enough to have
# judged most of the partly-taken pool must not pay for a walk over all of it on every
# claim (those rows wait for other annotators); past the window the next pool is tried.
SCAN_WINDOW = 256

# Each pool's condition is its partial index's (annotation.models.Comparison): a held pair
# (an answer naming a model, not released) is in none of them.
_POOLS = {
    "partly": "c.is_gold = false AND c.held = false AND c.taken > 0 AND c.taken < c.required_judgments",
    "fresh": "c.is_gold = false AND c.held = false AND c.taken = 0",
    "gold": "c.is_gold = true AND c.held = false",
}


def _take_sql(pool: str) -> str:
    """``UPDATE ... SET taken = taken + 1 WHERE id = (pick) RETURNING id``, with ``{op}`` left open.

    Picks, locks and takes a slot of one comparison from ``pool`` that this annotator has
    never been handed, in one statement. One round at a time (``round_id = %s``, not
    ``= ANY``): only then can PostgreSQL read the pool's partial (round, id) index in id
    order instead of walking the whole table. The window subquery bounds the rows looked
    at; the pool's condition is repeated outside it so that, after skipping locked rows
    and locking one, PostgreSQL re-checks it on the row's latest version. The outer
    ``taken < required_judgments`` is a second line of defence (gold items are judged by
    everyone: their slots are counted but not capped). Parameters: round id, scan start,
    annotator id.
    """
    cond = _POOLS[pool]
    lock = " FOR UPDATE OF c SKIP LOCKED" if connection.vendor == "postgresql" else ""
    cap = "" if pool == "gold" else " AND taken < required_judgments"
    return (
        "UPDATE annotation_comparison SET taken = taken + 1 WHERE id = ("
        "SELECT c.id FROM annotation_comparison c "
        "WHERE c.id IN (SELECT c.id FROM annotation_comparison c "
        f"              WHERE c.round_id = %s AND {cond} AND c.id {{op}} %s ORDER BY c.id LIMIT {SCAN_WINDOW}) "
        f"AND {cond} "
        "AND NOT EXISTS (SELECT 1 FROM annotation_assignment a WHERE a.comparison_id = c.id AND a.annotator_id = %s) "
        f"ORDER BY c.id LIMIT 1{lock}){cap} RETURNING id"
    )


# PostgreSQL: take the slot and insert the lease in one statement (a data-modifying CTE),
# so a claim is one round trip in autocommit - no BEGIN / COMMIT - and the row lock is
# held for the statement only. Extra parameters: annotator, left, status, leased at, expires at.
_TAKE_AND_LEASE_SQL = (
    "WITH taken AS ({take}) "
    "INSERT INTO annotation_assignment "
    '(comparison_id, annotator_id, "left", status, leased_at, lease_expires_at, completed_at, skip_reason) '
    "SELECT id, %s, %s, %s, %s, %s, NULL, '' FROM taken RETURNING id, comparison_id"
)

_INSERT_ASSIGNMENT = (
    "INSERT INTO annotation_assignment "
    '(comparison_id, annotator_id, "left", status, leased_at, lease_expires_at, completed_at, skip_reason) '
    "VALUES (%s, %s, %s, %s, %s, %s, NULL, '') RETURNING id"
)


def _claim(annotator, project: Project, round_ids: list[int], pools: list[str], now) -> Assignment | None:
    """Take a slot of a comparison from the first pool that has one, and lease it.

    Plain SQL: this runs for every pair handed out, and the ORM spent more CPU building
    the statements than the database spent running them. Each try starts its scan at a
    random point of the round's id range and wraps round below it.
    """
    assignment = Assignment(
        annotator=annotator,
        left=Side.A if secrets.randbelow(2) == 0 else Side.B,
        status=AssignmentStatus.ACTIVE,
        leased_at=now,
        lease_expires_at=now + timedelta(seconds=project.lease_seconds),
    )
    fields = Assignment._meta
    lease = [
        annotator.pk,
        assignment.left,
        assignment.status,
        fields.get_field("leased_at").get_db_prep_value(now, connection),
        fields.get_field("lease_expires_at").get_db_prep_value(assignment.lease_expires_at, connection),
    ]
    one_statement = connection.vendor == "postgresql"
    tries = [(pool, round_id, op) for pool in pools for round_id in round_ids for op in (">=", "<")]
    with nullcontext() if one_statement else transaction.atomic(), connection.cursor() as cursor:
        starts: dict[int, int | None] = {}
        for pool, round_id, op in tries:
            if round_id not in starts:
                bounds = _id_range(round_id)
                starts[round_id] = random.randint(*bounds) if bounds else None
            if starts[round_id] is None:
                continue
            params = [round_id, starts[round_id], annotator.pk]
            if one_statement:
                cursor.execute(_TAKE_AND_LEASE_SQL.format(take=_take_sql(pool).format(op=op)), params + lease)
                row = cursor.fetchone()
                if row is None:
                    continue
                assignment.pk, assignment.comparison_id = row
            else:  # SQLite: no data-modifying CTEs; its transactions are IMMEDIATE (one writer)
                cursor.execute(_take_sql(pool).format(op=op), params)
                row = cursor.fetchone()
                if row is None:
                    continue
                assignment.comparison_id = row[0]
                cursor.execute(_INSERT_ASSIGNMENT, [row[0], *lease])
                assignment.pk = cursor.fetchone()[0]
            assignment._state.adding = False
            assignment._state.db = "default"
            return assignment
    return None


def assignment_grant(*, comparison: Comparison, annotator, left: str) -> Assignment | None:
    """Lease one comparison to one annotator with a given left side (live mode: the side
    its answers were streamed into), taking one of its slots. None when every slot is
    taken: a full comparison was judged by others, so this annotator has nothing to add.
    The caller checks that the annotator holds no assignment of it yet."""
    if not Comparison.objects.filter(pk=comparison.pk, taken__lt=F("required_judgments")).update(taken=F("taken") + 1):
        return None
    now = timezone.now()
    project = project_by_id(Round.objects.filter(pk=comparison.round_id).values_list("project_id", flat=True).get())
    return Assignment.objects.create(
        comparison=comparison,
        annotator=annotator,
        left=left,
        leased_at=now,
        lease_expires_at=now + timedelta(seconds=project.lease_seconds),
    )


def assignments_reclaim_expired(*, project: Project | None = None, now=None, limit: int = 500) -> int:
    """Expire leases past their time and free their slots. Returns how many were reclaimed."""
    now = now or timezone.now()
    with transaction.atomic():
        qs = Assignment.objects.filter(status=AssignmentStatus.ACTIVE, lease_expires_at__lte=now)
        if project is not None:
            qs = qs.filter(comparison__round__project=project)
        if connection.vendor == "postgresql":
            qs = qs.select_for_update(skip_locked=True, of=("self",))
        expired = list(qs.order_by("lease_expires_at").values_list("id", "comparison_id")[:limit])
        if not expired:
            return 0
        Assignment.objects.filter(pk__in=[a for a, _ in expired], status=AssignmentStatus.ACTIVE).update(
            status=AssignmentStatus.EXPIRED
        )
        per_comparison: dict[int, int] = {}
        for _, comparison_id in expired:
            per_comparison[comparison_id] = per_comparison.get(comparison_id, 0) + 1
        for comparison_id, n in sorted(per_comparison.items()):  # sorted: a stable lock order
            Comparison.objects.filter(pk=comparison_id).update(taken=F("taken") - n)
    return len(expired)


def assignment_next(*, annotator, project: Project, exclude: tuple[int, ...] = ()) -> Assignment | NoWork:
    """The annotator's next pair: a live lease they hold (not in ``exclude``) or a new claim."""
    now = timezone.now()
    live = _live_leases(annotator, project, now)
    for lease in live:
        if lease.pk not in exclude:
            return lease
    if len(live) >= MAX_LIVE_LEASES:
        return NoWork("Finish or skip the pairs you hold first.")
    round_ids = _open_round_ids(project)
    if not round_ids:
        return NoWork("No round of this project is open for annotation right now.")
    # Reclaiming looks at the lease index; once every few seconds per project is enough
    # (a lease is at least 30 s long), and always when the pool seems empty.
    reclaimed = cache.add(f"assignment:reclaimed:{project.pk}", 1, 5)
    if reclaimed:
        assignments_reclaim_expired(project=project, now=now, limit=100)
    pools = ["partly", "fresh"]
    if project.gold_rate > 0 and secrets.randbelow(1_000_000) < project.gold_rate * 1_000_000:
        pools.insert(0, "gold")
    claimed = _claim(annotator, project, round_ids, pools, now)
    if claimed is None and not reclaimed and assignments_reclaim_expired(project=project, now=now, limit=100):
        claimed = _claim(annotator, project, round_ids, pools, now)
    return claimed if claimed is not None else _why_no_work(annotator, round_ids, now)


def _why_no_work(annotator, round_ids: list[int], now) -> NoWork:
    open_comparisons = Comparison.objects.filter(round_id__in=round_ids, is_gold=False, held=False).filter(
        judgment_count__lt=F("required_judgments")
    )
    if not open_comparisons.exists():
        return NoWork("Every pair in the open rounds has all the judgments it needs. Thank you!")
    unseen = open_comparisons.exclude(assignments__annotator=annotator)
    if not unseen.exists():
        return NoWork("You have judged every pair that still needs judgments. Thank you!")
    next_free = (
        Assignment.objects.filter(comparison__in=unseen, status=AssignmentStatus.ACTIVE, lease_expires_at__gt=now)
        .order_by("lease_expires_at")
        .values_list("lease_expires_at", flat=True)
        .first()
    )
    wait = max(1, int((next_free - now).total_seconds())) if next_free else 60
    return NoWork(
        "The remaining pairs are being judged by others right now; some may come back if their leases expire.",
        retry_after_seconds=wait,
    )


# --- Skipping and submitting -------------------------------------------------------


_LOCKED_ASSIGNMENT_SQL = (
    'SELECT a.annotator_id, a."left", a.status, a.comparison_id, c.sample_a_id, c.sample_b_id, c.is_gold, '
    "r.id, r.status, r.project_id, j.id "
    "FROM annotation_assignment a "
    "JOIN annotation_comparison c ON c.id = a.comparison_id "
    "JOIN annotation_round r ON r.id = c.round_id "
    "LEFT JOIN annotation_judgment j ON j.assignment_id = a.id "
    "WHERE a.id = %s"
)


def locked_assignment(assignment_id: int, annotator: Any) -> tuple[Assignment, int | None]:
    """The assignment, its comparison, round and project, with the assignment row locked,
    and the id of a judgment already saved on it (a retried submit).

    Plain SQL (this runs on every submit) and the project from the cache. Sample texts
    are not read here: only an edit needs its base text (``annotation.judging`` loads it).
    """
    sql = _LOCKED_ASSIGNMENT_SQL + (" FOR UPDATE OF a" if connection.vendor == "postgresql" else "")
    with connection.cursor() as cursor:
        cursor.execute(sql, [assignment_id])
        row = cursor.fetchone()
    if row is None or row[0] != annotator.pk:
        # Someone else's assignment reads as a missing one: ids reveal nothing.
        raise AssignmentRefused("This assignment does not exist or is not yours.", code=Refusal.FOREIGN)
    (
        annotator_id,
        left,
        status,
        comparison_id,
        sample_a_id,
        sample_b_id,
        is_gold,
        round_id,
        round_status,
        project_id,
        judgment_id,
    ) = row
    round_ = Round(id=round_id, status=round_status, project_id=project_id)
    round_.project = project_by_id(project_id)
    comparison = Comparison(
        id=comparison_id, round_id=round_id, sample_a_id=sample_a_id, sample_b_id=sample_b_id, is_gold=bool(is_gold)
    )
    comparison.round = round_
    assignment = Assignment(
        id=assignment_id, annotator_id=annotator_id, left=left, status=status, comparison_id=comparison_id
    )
    assignment.comparison = comparison
    for obj in (round_, comparison, assignment):
        obj._state.adding = False
        obj._state.db = "default"
    return assignment, judgment_id


def project_by_id(project_id: int) -> Project:
    """A project's settings, cached like ``selectors.project_get_cached`` (dropped on save)."""
    key = project_id_cache_key(project_id)
    project = cache.get(key)
    if project is None:
        project = Project.objects.get(pk=project_id)
        cache.set(key, project, 60)
    return project


def project_id_cache_key(project_id: int) -> str:
    return f"project:id:{project_id}"


def slot_ensure(assignment: Assignment, now) -> None:
    """Accept work on a lease that ran out, as long as nobody else took the slot meanwhile."""
    if assignment.status == AssignmentStatus.ACTIVE:
        return  # expired but not yet reclaimed: the slot is still held
    if assignment.status != AssignmentStatus.EXPIRED:
        raise AssignmentRefused(f"This pair was already {assignment.get_status_display().lower()}.", code=Refusal.STALE)
    comparison = assignment.comparison
    slot = Comparison.objects.filter(pk=comparison.pk)
    if not comparison.is_gold:
        slot = slot.filter(taken__lt=F("required_judgments"))
    if not slot.update(taken=F("taken") + 1):
        raise AssignmentRefused(
            "Your time on this pair ran out and it was handed to someone else; your answer was not saved.",
            code=Refusal.STALE,
        )
    assignment.status = AssignmentStatus.ACTIVE


@transaction.atomic
def assignment_skip(*, assignment_id: int, annotator, reason: str) -> Assignment:
    reason = reason.strip()
    if not reason:
        raise AssignmentRefused("Say why you skip this pair.", code=Refusal.REASON)
    if len(reason) > SKIP_REASON_MAX_CHARS:
        raise AssignmentRefused(
            f"Keep the reason under {SKIP_REASON_MAX_CHARS} characters ({len(reason):,} now).", code=Refusal.REASON
        )
    assignment, _ = locked_assignment(assignment_id, annotator)
    if assignment.status == AssignmentStatus.SKIPPED:
        return assignment  # a retried skip
    if assignment.status == AssignmentStatus.SUBMITTED:
        raise AssignmentRefused("This pair was already judged.", code=Refusal.STALE)
    if assignment.status == AssignmentStatus.ACTIVE:
        Comparison.objects.filter(pk=assignment.comparison_id).update(taken=F("taken") - 1)
    assignment.status = AssignmentStatus.SKIPPED
    assignment.skip_reason = reason
    assignment.completed_at = timezone.now()
    assignment.save(update_fields=["status", "skip_reason", "completed_at"])
    return assignment
