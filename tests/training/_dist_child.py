"""Run by ``tests/training/test_distributed.py`` under ``torchrun --nproc_per_node=2``: the collectives of
:mod:`gannorm.training.distributed` on real ranks (gloo), each rank saving what it computed to ``OUT/rank<r>.pt``.

- ``SyncBatchNorm``: each rank normalizes its half of one seeded global batch (BatchNorm1d on ``[N, C]`` and
  BatchNorm2d on ``[N, C, H, W]``, momentum 0.1 and None, two steps), back-propagates its half of a fixed
  weighted sum (scaled by 1/N, the gradients of the parameters then summed over the ranks); the test compares
  the pieces with ``nn.BatchNorm`` on the whole batch in one process.
- ``Ranks.check_agree``: identical states pass; a state that differs on rank 1 by one ulp in one entry fails
  on every rank, naming that entry.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from gannorm.training.distributed import RankFailure, ranks_from_env, setup, sync_batch_norm, synced

GLOBAL_BATCH = 8


def batch_norm_case(ranks, bn: nn.Module, shape: tuple[int, ...], seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    x_all = torch.randn(GLOBAL_BATCH, *shape, generator=gen) * 3 + 1
    w_all = torch.randn(GLOBAL_BATCH, *shape, generator=gen)
    model = sync_batch_norm(nn.Sequential(bn)).train()
    out = {"outputs": [], "input_grads": []}
    for _ in range(2):
        x = ranks.shard(x_all).clone().requires_grad_(True)
        with synced(model):
            y = model(x)
        loss = (y * ranks.shard(w_all)).sum() * ranks.loss_scale
        model.zero_grad()
        loss.backward()
        ranks.sum_grads(list(model.parameters()))
        out["outputs"].append(y.detach())
        out["input_grads"].append(x.grad)
    out["param_grads"] = [p.grad for p in model.parameters()]
    out["state"] = {k: v.clone() for k, v in model[0].state_dict().items()}
    out["type"] = type(model[0]).__name__
    return out


def main(out_dir: Path) -> None:
    ranks = ranks_from_env()
    setup(ranks, torch.device("cpu"))
    torch.manual_seed(0)
    result = {"bn1d": batch_norm_case(ranks, nn.BatchNorm1d(5), (5,), 1),
              "bn2d": batch_norm_case(ranks, nn.BatchNorm2d(3), (3, 4, 4), 2),
              "bn2d_cumulative": batch_norm_case(ranks, nn.BatchNorm2d(3, momentum=None), (3, 2, 2), 3)}
    state = {"w": torch.linspace(0, 1, 7), "u": torch.ones(3)}
    result["agree_entries"] = ranks.check_agree(state, step=5)
    if ranks.rank == 1:
        state["u"][1] = torch.nextafter(state["u"][1], torch.tensor(2.0))
    try:
        ranks.check_agree(state, step=5)
        result["disagree"] = None
    except RankFailure as err:
        result["disagree"] = str(err)
    torch.save(result, out_dir / f"rank{ranks.rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
