"""The run layer: what one training run is and what it leaves behind.

``identity`` says when two runs are the same run (:func:`~deepm3.run.identity.training_key`).
:mod:`deepm3.train` is the entry point that fits and tests; :mod:`deepm3.checkpoint` reads a
run's checkpoint for resume, serving and the studies alike.
"""
