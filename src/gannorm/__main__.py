"""``python -m gannorm``: the command line (also what ``torchrun -m gannorm`` runs on every rank).

Under torchrun, ranks other than 0 print nothing on stdout (rank 0 prints the same: the run's summary,
its folder, the evaluation's numbers), and the process group a command joined (``train``, ``eval``,
``fid-stats``) is left before the process exits.
"""
import contextlib
import os
import sys

from .cli import main
from .training.distributed import shutdown


def run() -> int:
    with contextlib.ExitStack() as stack:
        if os.environ.get("RANK", "0").strip() not in ("", "0"):
            stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
        try:
            return main()
        finally:
            shutdown()


if __name__ == "__main__":
    sys.exit(run())
