from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model

        from accounts import authentication  # noqa: F401  (registers the token scheme in the OpenAPI schema)
        from accounts.models import ApiToken

        # Groups need the permissions, which Django creates in post_migrate; so the
        # roles are synchronised there too (idempotent, every deployment gets them).
        post_migrate.connect(_sync_roles, dispatch_uid="accounts.sync_roles")
        m2m_changed.connect(
            _groups_changed, sender=get_user_model().groups.through, dispatch_uid="accounts.roles_changed"
        )
        # Hot endpoints read tokens (with their user) from the cache: any change through
        # the ORM drops the cached copy.
        for name, signal in (("saved", post_save), ("deleted", post_delete)):
            signal.connect(_user_changed, sender=get_user_model(), dispatch_uid=f"accounts.user_{name}")
            signal.connect(_token_changed, sender=ApiToken, dispatch_uid=f"accounts.token_{name}")


def _sync_roles(sender, using="default", **kwargs) -> None:
    if sender.name != "accounts":
        return
    from accounts.services import roles_sync

    roles_sync(using=using)


def _groups_changed(sender, instance, action, reverse, pk_set, **kwargs) -> None:
    """A user's groups changed (from either side): forget the cached roles."""
    if action not in ("post_add", "post_remove", "post_clear", "pre_clear"):
        return
    from accounts.roles import roles_forget

    if reverse:  # group.user_set changed: pk_set holds users (None on clear: forget all we can name)
        user_ids = pk_set if pk_set is not None else instance.user_set.values_list("pk", flat=True)
        roles_forget(list(user_ids))
    else:
        roles_forget([instance.pk])


def _user_changed(sender, instance, **kwargs) -> None:
    from accounts.authentication import tokens_forget
    from accounts.models import ApiToken

    tokens_forget(list(ApiToken.objects.filter(user_id=instance.pk).values_list("key_hash", flat=True)))


def _token_changed(sender, instance, **kwargs) -> None:
    from accounts.authentication import tokens_forget

    tokens_forget([instance.key_hash])
