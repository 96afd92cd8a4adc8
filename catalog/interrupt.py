"""SIGTERM and SIGINT stop a long command within seconds, as one clean exception.

`stop_on_signals()` makes both signals raise `Interrupted` in the main thread, where
the stages catch it, keep every answer already received and record the run as
interrupted. `exit_now()` then ends the process without waiting for worker threads
whose requests are still on the wire (Python would otherwise join them at exit,
for as long as their timeout).
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from typing import Iterator

from catalog.errors import Interrupted

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _raise(signum: int, frame) -> None:
    raise Interrupted(f"stopped by {signal.Signals(signum).name}; every answer received is kept "
                      "and a rerun continues where this one stopped")


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise `Interrupted` (main thread only)."""
    previous = {sig: signal.signal(sig, _raise) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def is_interrupt(exc: BaseException) -> bool:
    """Our Interrupted, Ctrl-C, or an orchestrator's own termination signal (Prefect's)."""
    return isinstance(exc, (Interrupted, KeyboardInterrupt)) or type(exc).__name__ == "TerminationSignal"


def exit_now(message: str, code: int = 130) -> None:
    """Say why on stderr and leave at once: state is already committed, in-flight work is abandoned."""
    sys.stdout.flush()
    print(f"catalog: {message}", file=sys.stderr, flush=True)
    os._exit(code)
