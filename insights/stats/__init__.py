"""Statistics for the lead dashboards (docs/statistics.md), on aggregates only.

Nothing here touches the database: ``annotation.dashboards`` aggregates judgments in
SQL (counts per prompt pattern, per version pair, per annotator…) and hands these
small tables to the pure, vectorised numpy functions of this package:

- ``winrate``: old-vs-new win rate with ties as half a win, Wilson interval,
  percentile bootstrap over prompts, exact sign test;
- ``bradley_terry``: ratings over model versions (FastChat's method), bootstrap
  intervals, ranks, the predicted win matrix;
- ``agreement``: pairwise agreement, Cohen's and Fleiss' kappa, Krippendorff's alpha,
  Gwet's AC1;
- ``quality``: per-annotator quality figures and outlier flags.
"""
