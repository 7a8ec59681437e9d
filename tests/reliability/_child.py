"""``python -m gannorm`` for the crash-safety tests, with markers on stdout and optional slow moments.

Run as ``python tests/reliability/_child.py train ...``: it runs the ``gannorm`` module exactly as
``python -m gannorm`` does, after instrumenting the process (never the library's code) so that the
parent test can SIGKILL or SIGINT it at a chosen moment. It prints, flushed, one line per event:

    READY               gannorm is imported; the command is about to start
    STEP n              G step n has been computed (its logs and checkpoint come next)
    CKPT-BEGIN k        the k-th checkpoint write of this process starts (a ``torch.save``)
    CKPT-HALF k         half of that checkpoint's bytes are in its file (only for the slow write)
    CKPT-DONE k         the k-th ``torch.save`` returned
    SLOW-STEP n         G step n is about to be computed, after a long pause (only for the slow step)

Environment variables:

    GANNORM_CHILD_SLOW_WRITE=k  the k-th checkpoint write stops for a minute after writing half its bytes
    GANNORM_CHILD_SLOW_STEP=n   G step n starts with a pause of a minute (an interruptible sleep)

In a training run ``torch.save`` writes only checkpoints, so wrapping it marks exactly those writes.
"""
from __future__ import annotations

import io
import itertools
import os
import runpy
import sys
import time

import torch

from gannorm.training import Trainer

PAUSE = 60.0
SLOW_WRITE = int(os.environ.get("GANNORM_CHILD_SLOW_WRITE", "0"))
SLOW_STEP = int(os.environ.get("GANNORM_CHILD_SLOW_STEP", "0"))

_writes = itertools.count(1)
_torch_save = torch.save
_train_step = Trainer.train_step


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def halting_save(obj, f, *args, **kwargs):
    """``torch.save`` through a buffer, written in two halves (with the slow pause between them)."""
    k = next(_writes)
    say(f"CKPT-BEGIN {k}")
    if not hasattr(f, "write"):  # a path: not how checkpoints are written, keep torch's behaviour
        _torch_save(obj, f, *args, **kwargs)
    else:
        buf = io.BytesIO()
        _torch_save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        if k == SLOW_WRITE:
            os.fsync(f.fileno())
            say(f"CKPT-HALF {k}")
            time.sleep(PAUSE)
        f.write(data[len(data) // 2:])
    say(f"CKPT-DONE {k}")


def marked_step(self):
    if self.step + 1 == SLOW_STEP:
        say(f"SLOW-STEP {SLOW_STEP}")
        time.sleep(PAUSE)
    out = _train_step(self)
    say(f"STEP {self.step}")
    return out


torch.save = halting_save
Trainer.train_step = marked_step

if __name__ == "__main__":
    say("READY")
    runpy.run_module("gannorm", run_name="__main__", alter_sys=True)
