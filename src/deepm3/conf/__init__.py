"""Hydra configs, importable as a package so console scripts find them (``pkg://deepm3.conf``)."""
