from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Annotation"

    def ready(self) -> None:
        from annotation.models import Project

        # Hot endpoints read projects from the cache: any change through the ORM drops
        # the cached copy.
        for name, signal in (("saved", post_save), ("deleted", post_delete)):
            signal.connect(_project_changed, sender=Project, dispatch_uid=f"annotation.project_{name}")


def _project_changed(sender, instance, **kwargs) -> None:
    from django.core.cache import cache

    from annotation.assignment import project_id_cache_key
    from annotation.selectors import project_cache_key

    cache.delete_many([project_cache_key(instance.slug), project_id_cache_key(instance.pk)])
