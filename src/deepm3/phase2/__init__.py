"""The experiment suite ("phase 2", docs/experiments.md): train a plan of runs, then the studies.

- :mod:`~deepm3.phase2.plan` -- which runs (models x seeds) and where they live;
- :mod:`~deepm3.phase2.tune` -- the baselines over a small grid, selected on validation NDCG@10;
- :mod:`~deepm3.phase2.train_all` -- trains the plan, resumable, one failure never stops the rest;
- :mod:`~deepm3.phase2.progress` -- the plan before training and one progress line per run;
- :mod:`~deepm3.phase2.results` -- reads finished runs back (metrics, per-user rows);
- :mod:`~deepm3.phase2.main_table`, :mod:`~deepm3.phase2.significance_study`,
  :mod:`~deepm3.phase2.irregularity_study`, :mod:`~deepm3.phase2.robustness` -- the studies;
- :mod:`~deepm3.phase2.budget` -- ``budget.md``: runs per model that stopped at their epoch cap;
- :mod:`~deepm3.phase2.claims` -- ``claims.md``: the original work's five claims against the tables
  (each a :class:`~deepm3.phase2.claim_checks.Claim` beside its rule; the evidence they read in
  :mod:`~deepm3.phase2.claim_evidence`);
- :mod:`~deepm3.phase2.verify` -- every table that needs no re-testing, recomputed from the run files;
- :mod:`~deepm3.phase2.report` -- ``results/<dataset>/README.md``;
- :mod:`~deepm3.phase2.study_registry` -- the studies that write tables, by name;
- :mod:`~deepm3.phase2.stages` -- every stage one :class:`~deepm3.phase2.stages.Stage` (name, what it
  needs, ``run(context)``) over one :class:`~deepm3.phase2.stages.Context` built from the config;
  :mod:`~deepm3.phase2.pipeline` runs the ones the config names;
- :mod:`~deepm3.phase2.cli` -- ``python -m deepm3.phase2``: all of it from one Hydra command, or
  the stages ``studies=[...]`` names.
"""
