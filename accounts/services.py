"""Writes about people: users with roles, outside annotators, API tokens."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from axes.utils import reset as axes_reset
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.authentication import hash_key, new_key, tokens_forget
from accounts.models import ApiToken
from accounts.roles import ROLE_PERMISSIONS, Role
from core.text import text_hash

User = get_user_model()


def roles_sync(*, using: str = "default") -> None:
    """Create the role groups and give them their permissions (idempotent)."""
    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using)
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.using(using).get_or_create(name=role.value)
        wanted = []
        for dotted in perms:
            app_label, codename = dotted.split(".")
            wanted.append(Permission.objects.using(using).get(content_type__app_label=app_label, codename=codename))
        group.permissions.set(wanted)


def user_create(
    *, username: str, password: str | None, roles: Iterable[Role] = (), email: str = "", **extra: Any
) -> AbstractBaseUser:
    user = User(username=username, email=email, **extra)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    if roles:
        user.groups.set(Group.objects.filter(name__in=[r.value for r in roles]))
    return user


def external_annotator_get_or_create(*, name: str) -> AbstractBaseUser:
    """An annotator from another tool or vendor, named in imported labels. Cannot log in.

    One user per exact name, found again by that name (re-imports add nothing). The name
    is kept as the first name (its first 150 characters); the username is readable:
    ``ext.<slug>`` for the first name to claim that slug, ``ext.<slug>.<hash of the
    name>`` for the names that share it ("acme:W7" and "acme:w7", "Zoë" and "Zoe", "a.b"
    and "ab" are four users). Users made before this rule (``ext.<slug>`` for any name)
    are found the same way, by their username and first name.
    """
    display = name[:150]
    slug = slugify(name.replace(":", "-"))
    digest = text_hash(name)
    plain = "ext." + (slug[:140] or digest[:16])
    # A slug holds no dot, so these never meet a plain username; the last one belongs to
    # this exact name whatever its first name says.
    stem = slug or "name"
    exact = f"ext.{stem[:80]}.{digest}"
    candidates = [plain, f"ext.{stem[:100]}.{digest[:8]}", exact]
    if len(name) > len(display):
        # The first name holds only the start of the name: the full hash tells them apart.
        candidates = [exact]
        found = User.objects.filter(username=exact).first()
        found = found or User.objects.filter(username=plain, first_name=display).first()  # the earlier rule
    else:
        found = User.objects.filter(username__in=candidates, first_name=display).order_by("username").first()
    if found is not None:
        return found
    for username in candidates:
        user, created = User.objects.get_or_create(
            username=username, defaults={"first_name": display, "is_active": False}
        )
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        if user.first_name == display or username == exact:
            return user
    raise AssertionError("unreachable: the last candidate is always returned")


def login_failures_reset(*, username: str) -> int:
    """Forget the failed logins of ``username`` from every address, lifting its lockout
    (a password reset proved the account's owner is back). Returns the records dropped."""
    return axes_reset(username=username)


def api_token_create(*, user: Any, name: str) -> tuple[ApiToken, str]:
    """Create a token and return it with its key; the key is not stored and cannot be shown again."""
    key = new_key()
    token = ApiToken.objects.create(user=user, name=name.strip() or "token", prefix=key[:10], key_hash=hash_key(key))
    return token, key


def api_token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    # Forget the cached look-up now, and again once the transaction commits: a request
    # that authenticated in between must not put the revoked token back for a minute.
    tokens_forget([token.key_hash])
    transaction.on_commit(lambda: tokens_forget([token.key_hash]))
