"""The analysis core of the experiment suite (docs/experiments.md, "The analyses"): pure, numpy/scipy functions.

- :mod:`~deepm3.analysis.entropy` -- random topological entropy of symbolised histories;
- :mod:`~deepm3.analysis.noise` -- test-time perturbations of the prediction inputs;
- :mod:`~deepm3.analysis.per_user` -- per-user result rows, averaged over seeds;
- :mod:`~deepm3.analysis.significance` -- paired tests, Holm-Bonferroni, effect sizes;
- :mod:`~deepm3.analysis.irregularity` -- gap-CV tertiles and bootstrap lifts.

Nothing here trains, loads checkpoints or writes files: the orchestration calls these.
"""
