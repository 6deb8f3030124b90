"""The pre-registered study (``docs/results/study/plan.yaml``): a list of runs, each one cell of the
plan trained with one seed and rolled out once on the test layouts, ending in one small committed
file ``docs/results/study/runs/<cell>_s<seed>.json``; the report regenerates from those files.

``trimodal-study list`` prints the runs (``--missing``: those without a result), ``run CELL SEED``
does one (resuming its training and its test rollout where an interruption left them), ``next``
does the first missing one, ``report`` writes ``report.md`` and its plot."""
