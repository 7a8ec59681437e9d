"""Run by ``tests/app/test_sharded_eval.py`` under ``torchrun --nproc_per_node=2``: a tiny digits run whose
evaluations during training are sharded over the two ranks (the trainer runs its ``Evaluation`` callback on
every rank). Usage: ``_sharded_eval_child.py OUT_DIR RUN_NAME key=value...``.
"""
from __future__ import annotations

import sys

from gannorm.app.training import train
from gannorm.training.distributed import shutdown

if __name__ == "__main__":
    out_dir, name, *overrides = sys.argv[1:]
    try:
        result = train("digits", [f"train.out_dir={out_dir}", f"train.run_name={name}", *overrides])
        assert result.status == "finished", result.status
    finally:
        shutdown()
