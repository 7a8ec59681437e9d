"""The training engine: the :class:`Trainer` loop, its callbacks, EMA, checkpoints (:mod:`.checkpointing`),
the stop on SIGINT/SIGTERM (:mod:`.signals`) and the process-state guards.

The commands built on it (``gannorm train``, ``--resume``, comparison presets) are in
:mod:`gannorm.app.training`.
"""
from .callbacks import Callback, default_callbacks
from .trainer import RunResult, Trainer

__all__ = ["Callback", "RunResult", "Trainer", "default_callbacks"]
