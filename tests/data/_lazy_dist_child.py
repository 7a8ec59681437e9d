"""Run by ``tests/data/test_lazy_training.py`` under ``torchrun --nproc_per_node=2``: a short training run
on a lazily read image folder; each rank prints how many images its dataset decoded."""
from __future__ import annotations

import sys

from gannorm import config as config_mod
from gannorm.training import Trainer


def main(overrides: list[str]) -> None:
    cfg = config_mod.load(None, overrides)
    cfg.data.in_memory, cfg.data.workers = False, 1  # read by the trainer with getattr (keys of data.*)
    trainer = Trainer(cfg)
    assert trainer.run().status == "finished"
    s = trainer.data.stats
    print(f"rank {trainer.ranks.rank} batches {s.batches} decoded {s.decoded} missed {s.missed}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
