"""Progress bars that show on a terminal and stay silent in CI, cron and pipes."""

from __future__ import annotations

import os
import sys


def interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


def progress_bar(**kwargs):
    """A tqdm bar on stderr, disabled unless a person is watching."""
    from tqdm import tqdm

    kwargs.setdefault("disable", not interactive())
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(file=sys.stderr, **kwargs)
