"""``python -m deepm3.phase2 dataset=<name> preset=<smoke|full> seeds=[...] device=auto``: every stage,
or only those ``'studies=[...]'`` names (e.g. ``'studies=[robustness,report]'``)."""

from deepm3.cli_args import run_cli
from deepm3.phase2.cli import main

if __name__ == "__main__":
    run_cli(main)
