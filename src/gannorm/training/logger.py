"""Where the trainer's scalars go: the run folder's ``metrics.jsonl`` / ``metrics.csv``, TensorBoard and W&B."""
from __future__ import annotations

import sys

from ..runfolder import MetricsRow, RunFolder
from .wandb_log import WandbRun


class MetricSink:
    """Logs ``{name: value}`` at a step. TensorBoard scalars are written when ``tensorboard`` is installed;
    ``resume_step`` purges TensorBoard events after it, so each step appears once after a resume (the
    run folder's own logs are truncated by :meth:`RunFolder.truncate_logs`)."""

    def __init__(self, folder: RunFolder, tensorboard: bool = True, resume_step: int | None = None,
                 wandb: WandbRun | None = None) -> None:
        self.folder = folder
        self._wandb = wandb
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # optional dependency
            except ImportError:
                print("gannorm: tensorboard is not installed; logging to metrics.jsonl/csv only "
                      "(pip install tensorboard)", file=sys.stderr)
            else:
                self._tb = SummaryWriter(log_dir=str(folder.tensorboard_dir), purge_step=resume_step)

    def log(self, step: int, scalars: dict[str, float], csv_row: bool = True) -> None:
        """One row of metrics.jsonl (and of metrics.csv with ``csv_row``), and the TensorBoard scalars."""
        self.folder.append_metrics(MetricsRow(step, dict(scalars)), csv_row=csv_row)
        self.tensorboard(step, scalars)

    def tensorboard(self, step: int, scalars: dict[str, float]) -> None:
        """The scalars to the dashboards (TensorBoard, and W&B when on), not to the run folder's files."""
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, float(v), step)
        if self._wandb is not None:
            self._wandb.log(step, scalars)

    def image(self, tag: str, step: int, picture) -> None:
        """An RGB uint8 picture ``[H, W, 3]`` (a sample grid) as a TensorBoard image."""
        if self._tb is not None:
            self._tb.add_image(tag, picture, step, dataformats="HWC")
        if self._wandb is not None:
            self._wandb.image(tag, step, picture)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
