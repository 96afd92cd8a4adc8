"""Which files under a folder a block of code opens, and which folders it lists (Python's audit hooks)."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager


@contextmanager
def opened_under(root):
    """Yields (files, folders): the paths under `root` opened, and the folders listed, while the block runs.

    A folder opened to be listed (O_DIRECTORY) reads no file's bytes: it counts as listed.
    Audit hooks cannot be removed, so this one only stops recording when the block ends.
    """
    files: list[str] = []
    folders: list[str] = []
    state = {"on": True}
    prefix = str(root)

    def audit(event, args):
        if not state["on"] or not args or not isinstance(args[0], str) or not args[0].startswith(prefix):
            return
        if event == "open":
            (folders if args[2] & os.O_DIRECTORY else files).append(args[0])
        elif event == "os.scandir":  # listed by its path (through a descriptor it was opened above)
            folders.append(args[0])

    sys.addaudithook(audit)
    try:
        yield files, folders
    finally:
        state["on"] = False
