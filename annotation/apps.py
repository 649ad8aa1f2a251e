from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Annotation"

    def ready(self) -> None:
        # Groups need the permissions, which Django creates in post_migrate; so the
        # roles are synchronised there too (idempotent, every deployment gets them).
        post_migrate.connect(_sync_roles, dispatch_uid="annotation.sync_roles")
        from django.contrib.auth import get_user_model

        m2m_changed.connect(
            _groups_changed, sender=get_user_model().groups.through, dispatch_uid="annotation.roles_changed"
        )
        # Hot endpoints read tokens (with their user) and projects from the cache: any
        # change through the ORM drops the cached copy.
        from annotation.models import ApiToken, Project

        for name, signal in (("saved", post_save), ("deleted", post_delete)):
            signal.connect(_user_changed, sender=get_user_model(), dispatch_uid=f"annotation.user_{name}")
            signal.connect(_token_changed, sender=ApiToken, dispatch_uid=f"annotation.token_{name}")
            signal.connect(_project_changed, sender=Project, dispatch_uid=f"annotation.project_{name}")


def _sync_roles(sender, using="default", **kwargs) -> None:
    if sender.name != "annotation":
        return
    from annotation.services import roles_sync

    roles_sync(using=using)


def _groups_changed(sender, instance, action, reverse, pk_set, **kwargs) -> None:
    """A user's groups changed (from either side): forget the cached roles."""
    if action not in ("post_add", "post_remove", "post_clear", "pre_clear"):
        return
    from annotation.roles import roles_forget

    if reverse:  # group.user_set changed: pk_set holds users (None on clear: forget all we can name)
        user_ids = pk_set if pk_set is not None else instance.user_set.values_list("pk", flat=True)
        roles_forget(list(user_ids))
    else:
        roles_forget([instance.pk])


def _user_changed(sender, instance, **kwargs) -> None:
    from annotation.authentication import tokens_forget
    from annotation.models import ApiToken

    tokens_forget(list(ApiToken.objects.filter(user_id=instance.pk).values_list("key_hash", flat=True)))


def _token_changed(sender, instance, **kwargs) -> None:
    from annotation.authentication import tokens_forget

    tokens_forget([instance.key_hash])


def _project_changed(sender, instance, **kwargs) -> None:
    from django.core.cache import cache

    from annotation.assignment import project_id_cache_key
    from annotation.selectors import project_cache_key

    cache.delete_many([project_cache_key(instance.slug), project_id_cache_key(instance.pk)])
