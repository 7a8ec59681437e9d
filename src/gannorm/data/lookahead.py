"""Guessing the indices a generator will draw next, so a lazy dataset can decode them ahead.

A lazy dataset must draw its indices exactly as an in-memory one does: ``torch.randint(N, (n,),
generator=generator)`` at the moment it is asked, from the caller's generator, whose stream the
caller also uses for other things between two batches (flips, latent vectors, penalty weights).
So the next indices cannot be known; they can be guessed, and the guess is checked before use.

:class:`Lookahead` learns, per generator, the *gap* between two of our draws: how many 32-bit
outputs the caller consumed in between (:func:`find_gap` finds it by matching the generator's
next outputs against the outputs that followed our last draw). Torch's CPU generator (mt19937)
gives one 32-bit output per float32 uniform, so ``torch.rand(gap)`` on a copy of the state after
our draw moves it to where the next draw will start -- if the caller consumes the same amount as
before. Training loops repeat themselves, but not always step to step (``n_dis`` discriminator
steps, then a generator step): the gaps are predicted as a periodic sequence (:func:`next_gap`),
so after two periods every guess is right. A wrong guess costs only the wasted decoding: the
caller always gets the images of the indices it actually drew.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch

SIGNATURE = 8          # outputs compared to locate a generator's position (8 x 24 bits)
BLOCK = 1 << 18        # outputs generated per search block
MAX_GAP = 1 << 21      # the largest gap searched for (about 10 ms of search)
MAX_PERIOD = 32        # the longest repeating pattern of gaps recognised
WINDOW = 96            # gaps remembered per generator
GIVE_UP = 3            # consecutive failed searches after which a generator is no longer followed
MAX_STREAMS = 8        # generators followed at once (the least recently used is forgotten)


def generator_at(state: torch.Tensor, skip: int = 0) -> torch.Generator:
    """A new CPU generator at ``state``, moved on by ``skip`` 32-bit outputs."""
    gen = torch.Generator()
    gen.set_state(state)
    if skip:
        torch.rand(skip, generator=gen)
    return gen


def find_gap(start: torch.Tensor, target: torch.Tensor, limit: int = MAX_GAP) -> int | None:
    """How many 32-bit outputs lie between generator states ``start`` and ``target`` (None: not within ``limit``)."""
    signature = torch.rand(SIGNATURE, generator=generator_at(target)).numpy()
    gen, tail, seen = generator_at(start), np.empty(0, np.float32), 0
    while seen < limit:
        block = np.concatenate([tail, torch.rand(BLOCK, generator=gen).numpy()])
        for p in np.flatnonzero(block[:len(block) - SIGNATURE + 1] == signature[0]):
            if np.array_equal(block[p:p + SIGNATURE], signature):
                return seen - len(tail) + int(p)
        tail, seen = block[-(SIGNATURE - 1):], seen + BLOCK
    return None


def next_gap(gaps: list[int], max_period: int = MAX_PERIOD) -> int | None:
    """The next gap of a sequence assumed periodic: the shortest period that explains all of ``gaps``
    (the last gap if none does; None for no gaps)."""
    if not gaps:
        return None
    for p in range(1, min(max_period, len(gaps) - 1) + 1):
        if all(gaps[i] == gaps[i - p] for i in range(p, len(gaps))):
            return gaps[-p]
    return gaps[-1]


@dataclass
class _Stream:
    ref: weakref.ref
    after: torch.Tensor | None = None      # the generator's state right after our last draw
    gaps: list[int] = field(default_factory=list)
    failures: int = 0


class Lookahead:
    """Follows the generators a dataset draws from; :meth:`drew` after each draw, :meth:`guess` for the next."""

    def __init__(self) -> None:
        self._streams: OrderedDict[int, _Stream] = OrderedDict()

    def _stream(self, generator: torch.Generator) -> _Stream:
        s = self._streams.get(id(generator))
        if s is None or s.ref() is not generator:  # new, or a dead generator's id reused
            s = self._streams[id(generator)] = _Stream(weakref.ref(generator))
        self._streams.move_to_end(id(generator))
        while len(self._streams) > MAX_STREAMS:
            self._streams.popitem(last=False)
        return s

    def drew(self, generator: torch.Generator, before: torch.Tensor, gap: int | None = None) -> None:
        """Record a draw from ``generator``, whose state was ``before`` just before it. ``gap``: the gap
        since our previous draw when already known (a guess that came true), else it is searched for."""
        s = self._stream(generator)
        if s.after is not None and s.failures < GIVE_UP:
            if gap is None:
                gap = find_gap(s.after, before)
            if gap is None:
                s.failures, s.gaps = s.failures + 1, []
            else:
                s.failures, s.gaps = 0, (s.gaps + [gap])[-WINDOW:]
        s.after = generator.get_state()

    def guess(self, generator: torch.Generator, n: int, high: int) -> tuple[int, torch.Tensor] | None:
        """``(gap, indices)``: the gap expected before the next draw of ``n`` indices below ``high`` from
        ``generator``, and those indices; None when there is nothing to go on."""
        s = self._stream(generator)
        gap = next_gap(s.gaps) if s.failures < GIVE_UP else None
        if s.after is None or gap is None:
            return None
        return gap, torch.randint(high, (n,), generator=generator_at(s.after, gap))
