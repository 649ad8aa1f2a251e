from django.apps import AppConfig


class InsightsConfig(AppConfig):
    name = "insights"
    verbose_name = "Insights"

    def ready(self) -> None:
        from annotation import bulk

        # The tallies grow with the judgments: analyse them with them after a bulk write.
        for table in ("insights_comparisontally", "insights_verdicttally", "insights_projectactivity"):
            if table not in bulk.ANALYZE_WITH_JUDGMENTS:
                bulk.ANALYZE_WITH_JUDGMENTS.append(table)
