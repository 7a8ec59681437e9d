"""Image datasets too large for memory: read from disk when drawn (:class:`LazyDataset`).

A dataset that can be read lazily (``imagefolder``, ``npy``, ``celeba``, an extracted ``stl10``)
has an :class:`ImageReader`: an index of its images (file names, or record offsets) and one
``read(indices)`` that decodes, crops and resizes them. The same ``read`` fills an in-memory
:class:`~gannorm.data.base.Dataset` (:meth:`ImageReader.load`) and serves a :class:`LazyDataset`, so
both give bitwise the same pixels. ``in_memory="auto"`` (``data.in_memory`` in a config) keeps a
dataset in memory when its decoded size is at most :func:`auto_limit` (4 GiB, or a quarter of the
machine's memory if that is less) and reads it lazily above that.

A :class:`LazyDataset` draws its indices exactly as the in-memory dataset does (the same generator
calls), so a run gives bitwise the same weights either way, resumes the same way and shards over
ranks the same way. It decodes in worker processes (:class:`~gannorm.data.pool.DecodePool`) and,
when the workers have time, decodes the batch it expects to be asked for next
(:class:`~gannorm.data.lookahead.Lookahead`); :attr:`LazyDataset.stats` counts how often that guess
was right. Its resident memory is the index and a batch or two, whatever the dataset's size.

A reader may carry labels (``labels`` int64 [N], ``class_names``): a lazy dataset keeps them in the
training process (the reader its workers get has none) and looks up the labels of the indices it
drew, so ``sample_labelled`` gives bitwise the in-memory pixels and labels.
"""
from __future__ import annotations

import copy
import os
import weakref
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from .base import Dataset, DatasetError, Labelled, check_labels, to_float
from .lookahead import Lookahead
from .pool import Batch, DecodePool

AUTO_LIMIT = 4 << 30     # bytes of decoded images above which in_memory="auto" reads lazily ...
RAM_FRACTION = 4         # ... or above 1/RAM_FRACTION of the machine's memory, if that is less
LOAD_CHUNK = 1024        # images decoded at a time when loading a whole dataset into memory
MAX_WORKERS = 4          # data.workers when not given: min(MAX_WORKERS, the CPUs this process may use)


def total_memory() -> int | None:
    """The machine's physical memory in bytes (None where the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def auto_limit() -> int:
    """The decoded size in bytes above which ``in_memory="auto"`` reads a dataset lazily."""
    ram = total_memory()
    return AUTO_LIMIT if ram is None else min(AUTO_LIMIT, ram // RAM_FRACTION)


def default_workers() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_WORKERS, cpus))


class StringTable:
    """Many strings (file or member names) in one bytes object and an offsets array: about one byte
    per character, where a list of ``str`` costs some 50 bytes more per entry. Built from ``str``
    or from ``bytes`` (file names as the OS gives them); indexing gives ``str``. Picklable."""

    def __init__(self, strings: Iterable[str | bytes]) -> None:
        encoded = [s if isinstance(s, bytes) else os.fsencode(s) for s in strings]
        self._blob = b"".join(encoded)
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=self._offsets[1:])

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> str:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} strings")
        i %= len(self)
        return os.fsdecode(self._blob[self._offsets[i]:self._offsets[i + 1]])

    def head(self, n: int | None) -> "StringTable":
        """The first ``n`` strings (all of them for None)."""
        if n is None or n >= len(self):
            return self
        out = StringTable([])
        out._blob, out._offsets = self._blob[:self._offsets[n]], self._offsets[:n + 1].copy()
        return out


class ImageReader:
    """Random access to a dataset's decoded images. A subclass sets ``name``, ``source`` (where the
    images are), ``count`` and ``shape`` (C, H, W), and defines :meth:`read`; a labelled one also sets
    ``labels`` (int64 [count]) and ``class_names`` (tuple of str, or None). It must pickle (to reach
    spawned workers): a subclass holding an open file drops it in ``__getstate__``."""

    name: str
    source: str
    count: int
    shape: tuple[int, int, int]
    labels: torch.Tensor | None = None
    class_names: tuple[str, ...] | None = None

    def read(self, indices: np.ndarray) -> torch.Tensor:
        """The images ``indices`` (int64 [n], any order, repeats allowed) as uint8 [n, C, H, W]."""
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        """The decoded size of all the images (what holding them in memory costs)."""
        return self.count * int(np.prod(self.shape))

    def load(self) -> Dataset:
        """All the images decoded now, in memory."""
        out = torch.empty((self.count, *self.shape), dtype=torch.uint8)
        for i in range(0, self.count, LOAD_CHUNK):
            out[i:i + LOAD_CHUNK] = self.read(np.arange(i, min(i + LOAD_CHUNK, self.count)))
        return Dataset(self.name, out, "image", labels=self.labels, source=self.source,
                       class_names=self.class_names)

    def dataset(self, in_memory: bool | str = "auto", workers: int | None = None) -> Dataset | LazyDataset:
        """In memory (``True``), lazy (``False``) or lazy above :func:`auto_limit` bytes (``"auto"``)."""
        lazy = in_memory is False or (in_memory == "auto" and self.nbytes > auto_limit())
        return LazyDataset(self, workers) if lazy else self.load()


@dataclass
class LoaderStats:
    batches: int = 0     # sample() calls
    prefetched: int = 0  # ... served by a batch decoded ahead
    missed: int = 0      # batches decoded ahead in vain (the guess was wrong)
    decoded: int = 0     # images decoded by sample(), ahead or not (only the rows asked for)


@dataclass
class _Ahead:
    generator: weakref.ref
    gap: int
    indices: torch.Tensor
    rows: torch.Tensor
    batch: Batch


class LazyDataset(Labelled):
    """An image dataset read from disk when drawn, with the interface of :class:`~gannorm.data.base.Dataset`
    (``name``, ``kind``, ``shape``, ``len``, ``get``, ``sample``, ``sample_labelled``, ``sample_labels``,
    ``labels``, ``class_names``, ``num_classes``, ``class_counts``, ``source``, ``close``).

    ``workers`` processes decode (``None``: :func:`default_workers`; 0: in this process, no decoding
    ahead). Call :meth:`close` (or use it as a context manager) to stop them; a later draw starts them
    again. They also stop when the dataset is garbage-collected or the interpreter exits.
    """

    kind = "image"
    modes = None
    mode_std = None
    in_memory = False

    def __init__(self, reader: ImageReader, workers: int | None = None) -> None:
        self.name, self.source = reader.name, reader.source
        self.labels, self.class_names = check_labels(reader.name, reader.labels, reader.count, reader.class_names)
        if reader.labels is not None:  # the workers decode pixels only: they get a reader without labels
            reader = copy.copy(reader)
            reader.labels, reader.class_names = None, None
        self.reader = reader
        self.workers = default_workers() if workers is None else int(workers)
        self._pool = DecodePool(reader, self.workers)
        self._lookahead = Lookahead() if self.workers > 0 else None
        self._ahead: _Ahead | None = None
        self.stats = LoaderStats()
        self._finalizer = weakref.finalize(self, self._pool.close)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.reader.shape)

    def __len__(self) -> int:
        return self.reader.count

    @property
    def data(self) -> torch.Tensor:
        raise DatasetError(f"{self.name}: a lazy dataset holds no image array; use get(indices) or sample(n), or "
                           "load it with data.in_memory=true")

    def _indices(self, indices: torch.Tensor | Sequence[int]) -> torch.Tensor:
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        if len(idx) and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise IndexError(f"{self.name}: index out of range for {len(self)} images")
        return idx.remainder(len(self))  # negative indices count from the end, as in a tensor

    def get(self, indices: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """The float32 batch ``[len(indices), C, H, W]`` in [-1, 1], decoded now."""
        return to_float(self._pool.submit(self._indices(indices).numpy()).result())

    def _draw(self, n: int, generator: torch.Generator | None,
              rows: torch.Tensor | Sequence[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` images drawn uniformly with replacement, by the same generator calls as
        :meth:`Dataset.sample <gannorm.data.base.Dataset.sample>`, and their indices. With ``rows``, only
        those rows of the batch are decoded and the others are left zero (a rank's shard of a global
        batch)."""
        follow = generator is not None and self._lookahead is not None
        before = generator.get_state() if follow and generator is not None else None
        idx = torch.randint(len(self), (n,), generator=generator)
        keep = torch.arange(n) if rows is None else torch.as_tensor(rows, dtype=torch.int64).reshape(-1)
        self.stats.batches += 1
        batch, gap = self._claim(generator, idx, keep)
        if batch is None:
            batch = self._submit(idx[keep])
        if follow:
            assert generator is not None and self._lookahead is not None and before is not None  # follow says so
            self._lookahead.drew(generator, before, gap)
            self._decode_ahead(generator, n, keep)
        images = to_float(batch.result())
        if rows is None:
            return images, idx
        out = torch.zeros((n, *self.shape), dtype=torch.float32)
        out[keep] = images
        return out, idx

    def _claim(self, generator: torch.Generator | None, idx: torch.Tensor,
               keep: torch.Tensor) -> tuple[Batch | None, int | None]:
        """The batch decoded ahead and its gap, if it is exactly this draw; else drop it (unless it was
        decoded for another generator's next draw: a probe from a generator of its own keeps it)."""
        ahead = self._ahead
        owner = None if ahead is None else ahead.generator()
        if ahead is None or (owner is not None and owner is not generator):
            return None, None
        self._ahead = None
        if owner is generator and torch.equal(ahead.indices, idx) and torch.equal(ahead.rows, keep):
            self.stats.prefetched += 1
            return ahead.batch, ahead.gap
        ahead.batch.cancel()
        self.stats.missed += 1
        return None, None

    def _decode_ahead(self, generator: torch.Generator, n: int, keep: torch.Tensor) -> None:
        assert self._lookahead is not None  # called only when following a generator's draws
        guess = self._lookahead.guess(generator, n, len(self))
        if guess is not None:
            gap, idx = guess
            if self._ahead is not None:  # one batch ahead at a time: the latest stream's
                self._ahead.batch.cancel()
            self._ahead = _Ahead(weakref.ref(generator), gap, idx, keep, self._submit(idx[keep]))

    def _submit(self, indices: torch.Tensor) -> Batch:
        self.stats.decoded += len(indices)
        return self._pool.submit(indices.numpy())

    def close(self) -> None:
        """Stop the worker processes (and drop a batch decoded ahead)."""
        if self._ahead is not None:
            self._ahead.batch.cancel()
            self._ahead = None
        self._pool.close()

    def __enter__(self) -> "LazyDataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        labels = "" if self.labels is None else f", {self.num_classes} classes"
        return (f"LazyDataset({self.name!r}, image, n={len(self)}, shape={self.shape}{labels}, "
                f"workers={self.workers}, source={self.source!r})")
