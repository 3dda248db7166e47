"""Terminal niceties of a training run: a progress bar and a clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def progress_bar(total: int, initial: int) -> Any:
    """A tqdm bar over ``total`` steps, ``initial`` of them already done (a resumed run)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step")


@contextmanager
def stop_on_signals(request_stop: Callable[[], None]) -> Iterator[None]:
    """SIGINT/SIGTERM call ``request_stop`` inside the block (main thread only: Streamlit runs
    scripts in other threads, where handlers cannot be installed)."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: request_stop())
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
