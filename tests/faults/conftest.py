"""The fault suite: every test is one case tried as an attacker or a bad night would.

Each case records its figures (crashes, answers lost, paid twice, key found, and a
measured note) with the `figures` fixture; `python tests/faults/report.py` runs the
suite and writes them to docs/reliability.md.
"""

from __future__ import annotations

import dataclasses

import pytest


@dataclasses.dataclass
class Figures:
    """What one case measured; every count is expected to be 0."""

    crashes: int = 0  # tracebacks, RecursionError/OverflowError, deaths by signal, hangs
    answers_lost: int = 0  # 200 analyses the server charged for that the catalogue did not keep
    paid_twice: int = 0  # images the server charged for more than once
    key_found: int = 0  # places the API key turned up: database, output, logs, artifacts
    originals_damaged: int = 0  # photos whose bytes changed when nothing should have written them
    keywords_lost: int = 0  # user keywords gone after a write-back
    not_restorable: int = 0  # written files that --undo could not restore
    note: str = ""  # the measured fact that makes the case, e.g. "stopped in 1.3 s"


@pytest.fixture
def figures(request) -> Figures:
    """Fill in what the case measured; it is reported even when the test fails."""
    found = Figures()
    yield found
    request.node.user_properties.append(("figures", dataclasses.asdict(found)))
