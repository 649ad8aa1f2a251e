from django.apps import AppConfig


class RlhfExportConfig(AppConfig):
    name = "rlhf_export"
    verbose_name = "RLHF exports"
