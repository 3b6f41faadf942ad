"""The run layer: the steps of one training run and what it leaves behind.

:func:`deepm3.train.train` (the Hydra entry's body, in the shape of the Lightning + Hydra
template) seeds, builds the DataModule, the module and the Trainer, fits and tests; the steps it
calls live here: :mod:`~deepm3.run.stages` (resume, fit or a sibling's checkpoint, the noise
stage, the ``metrics.json`` record), :mod:`~deepm3.run.files` (the writer of the run folder) and
:mod:`~deepm3.run.identity` (when two runs are the same run). :mod:`deepm3.run.checkpoint` reads a
run's checkpoint for resume, serving and the studies alike.
"""
