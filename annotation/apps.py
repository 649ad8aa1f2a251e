from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_migrate


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
