"""Decoding a lazy dataset's images in worker processes (:class:`DecodePool`).

The pool is persistent: its processes start on the first batch and serve every later one until
:meth:`DecodePool.close` (which a lazy dataset's ``close()`` calls; the trainer calls it when a run
ends). Each worker runs one torch thread, ignores SIGINT and SIGTERM (the main process decides
when to stop, then closes the pool) and exits by itself if the main process dies. A batch is split
into parts of at most :data:`TASK` images, decoded by the reader's own ``read`` (the same function
that fills an in-memory dataset) and joined back in order.

Workers are forked where the platform can (Linux: instant start, the reader's file index shared
copy-on-write, no re-import of the caller's script); elsewhere they are spawned, and the reader is
pickled once per worker.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import warnings
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Sequence

import numpy as np
import torch

from .base import DatasetError

TASK = 64  # images per worker task at most
START_METHOD = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
_DIED = ("a data worker process died (out of memory, or killed); lower data.workers, or set data.workers=0 to "
         "decode in the training process")

_reader: Any = None  # the reader of this worker process (set by _start_worker)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)  # the main process is gone: nothing will ask for more images


def _start_worker(reader: Any, parent: int) -> None:
    global _reader
    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C reaches the whole process group; the main one stops us
        signal.signal(sig, signal.SIG_IGN)
    torch.set_num_threads(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    _reader = reader


def _read(indices: np.ndarray) -> np.ndarray:
    return _reader.read(indices).numpy()


class Batch:
    """The images of one request, being decoded: :meth:`result` waits for them (uint8 [n, C, H, W])."""

    def __init__(self, parts: Sequence[Future] | torch.Tensor, shape: tuple[int, ...]) -> None:
        self._parts = parts
        self._shape = shape

    def result(self) -> torch.Tensor:
        if isinstance(self._parts, torch.Tensor):
            return self._parts
        try:
            arrays = [f.result() for f in self._parts]
        except BrokenProcessPool as e:
            raise DatasetError(_DIED) from e
        if not arrays:
            return torch.empty((0, *self._shape), dtype=torch.uint8)
        return torch.from_numpy(np.concatenate(arrays) if len(arrays) > 1 else arrays[0])

    def cancel(self) -> None:
        """Drop the parts not started yet (a prefetch that turned out not to be needed)."""
        if not isinstance(self._parts, torch.Tensor):
            for f in self._parts:
                f.cancel()


class DecodePool:
    """``workers`` processes that decode batches with ``reader.read``; ``workers=0`` decodes in this process."""

    def __init__(self, reader: Any, workers: int) -> None:
        self.reader = reader
        self.workers = int(workers)
        self._executor: ProcessPoolExecutor | None = None

    def submit(self, indices: np.ndarray | Sequence[int]) -> Batch:
        """Start decoding the images ``indices``; the returned :class:`Batch` gives them, in order."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self.workers == 0:
            return Batch(self.reader.read(indices), self.reader.shape)
        parts = np.array_split(indices, min(len(indices), max(self.workers, -(-len(indices) // TASK))))
        executor = self._start()
        try:
            return Batch([executor.submit(_read, p) for p in parts], self.reader.shape)
        except BrokenProcessPool as e:
            self.close()
            raise DatasetError(_DIED) from e

    def _start(self) -> ProcessPoolExecutor:
        if self._executor is None:
            context = multiprocessing.get_context(START_METHOD)
            with warnings.catch_warnings():  # Python >= 3.12 warns about forking a threaded process
                warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
                self._executor = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker,
                                                     initargs=(self.reader, os.getpid()))
                self._executor.submit(int).result()  # start the processes now, under this filter
        return self._executor

    def close(self) -> None:
        """Stop the worker processes (waiting for the parts already running); a later submit starts new ones."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
