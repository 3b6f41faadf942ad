"""``python -m deepm3.phase2 dataset=<name> preset=<smoke|full> seeds=[...] device=auto``: every stage."""

from deepm3.phase2.cli import main

if __name__ == "__main__":
    main()
