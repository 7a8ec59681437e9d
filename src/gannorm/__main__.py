"""``python -m gannorm``: the command line (also what ``torchrun -m gannorm`` runs)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
