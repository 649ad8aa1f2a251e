from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Annotation"

    def ready(self) -> None:
        # Groups need the permissions, which Django creates in post_migrate; so the
        # roles are synchronised there too (idempotent, every deployment gets them).
        post_migrate.connect(_sync_roles, dispatch_uid="annotation.sync_roles")


def _sync_roles(sender, using="default", **kwargs) -> None:
    if sender.name != "annotation":
        return
    from annotation.services import roles_sync

    roles_sync(using=using)
