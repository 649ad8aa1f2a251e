"""Writes about people: users with roles, outside annotators, API tokens."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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
    """An annotator from another tool or vendor, named in imported labels. Cannot log in."""
    slug = slugify(name.replace(":", "-"))[:140]
    username = "ext." + (slug or text_hash(name)[:16])
    user, created = User.objects.get_or_create(
        username=username, defaults={"first_name": name[:150], "is_active": False}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


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
