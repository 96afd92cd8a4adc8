"""A clock that only moves when something sleeps: waits (429 resets, back-off) cost no real time."""

from __future__ import annotations


class FakeClock:
    """Pass `clock` as the clock and `clock.sleep` as the sleep, so the arithmetic is exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
