"""Stopping a run cleanly: SIGINT (Ctrl-C) and SIGTERM ask the trainer to stop after the current step.

The first signal (or :meth:`StopRequest.request`) is remembered; the loop checks
:attr:`StopRequest.requested` after each step, writes a checkpoint and ends with status ``interrupted``.
A second one raises ``KeyboardInterrupt`` at once (the last checkpoint stays). The handlers are
installed only while :meth:`StopRequest.handlers` is open, only on the main thread (Python allows no
other), and the caller's handlers are put back when it closes.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from types import FrameType
from typing import Iterator, Sequence

#: the signals that stop a run after the current step
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Whether a stop was asked for, and by which signal.

    Example::

        >>> stop = StopRequest()
        >>> with stop.handlers():  # doctest: +SKIP
        ...     while not stop.requested:
        ...         train_one_step()
    """

    def __init__(self) -> None:
        self.signum: int | None = None  # the signal of the first request, None until one came

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.signum is not None

    def request(self, signum: int = signal.SIGINT) -> None:
        """Ask to stop after the current step (what SIGINT/SIGTERM do); a second request stops at once.

        Args:
            signum: the signal that asked (named in the message on stderr).

        Raises:
            KeyboardInterrupt: a stop was already asked for.
        """
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\ngannorm: got signal {signum}; saving a checkpoint after this step", file=sys.stderr)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request(signum)

    @contextlib.contextmanager
    def handlers(self, signals: Sequence[int] = STOP_SIGNALS) -> Iterator[None]:
        """Within the block ``signals`` call :meth:`request` (on the main thread only; elsewhere nothing is
        installed); the caller's handlers are restored afterwards."""
        saved = {}
        if threading.current_thread() is threading.main_thread():
            for sig in signals:
                saved[sig] = signal.signal(sig, self._on_signal)
        try:
            yield
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
