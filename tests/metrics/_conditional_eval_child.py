"""Run by ``tests/metrics/test_conditional_eval.py`` under ``torchrun --nproc_per_node=2``: a sharded evaluation of a
class-conditional generator (gloo). Usage: ``_conditional_eval_child.py OUT_DIR``; each rank saves its result to
``OUT_DIR/rank<r>.pkl``. Also home of :class:`ClassLookup`, the hand-written conditional generator the tests use.
"""
from __future__ import annotations

import datetime
import pickle
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from gannorm.data import load_dataset
from gannorm.metrics.evaluate import EvalOptions, evaluate

#: the sharded evaluation: 600 generated (512 + 88 over two ranks), 300 real (160 + 140 in batches of 40)
SHARDED = dict(metrics=["cfd", "intra_cfd", "class_acc"], num_samples=600, num_real=300, batch_size=40, seed=1,
               progress=False)


class ClassLookup(nn.Module):
    """A conditional 'generator' returning real items of class ``(y + offset) % K`` chosen by z; it records its y."""

    def __init__(self, data, num_classes=10, offset=0):
        super().__init__()
        self.data, self.num_classes, self.offset = data, num_classes, offset
        self.members = [torch.nonzero(data.labels == k).flatten() for k in range(num_classes)]
        self.seen: list[torch.Tensor] = []
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z, y=None):
        self.seen.append(y.clone())
        j = (z[:, 0].abs() * 1e6).long()
        rows = [self.members[(int(k) + self.offset) % self.num_classes] for k in y]
        return self.data.get(torch.stack([m[int(i) % len(m)] for m, i in zip(rows, j)]))


def main(out_dir: Path) -> None:
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=120))
    data = load_dataset("digits", resolution=16)
    g = ClassLookup(data)
    result = evaluate(g, data, 4, EvalOptions(**SHARDED, sharded=True))
    rank = dist.get_rank()
    (out_dir / f"rank{rank}.pkl").write_bytes(pickle.dumps({"result": result, "seen": sum(len(y) for y in g.seen)}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
