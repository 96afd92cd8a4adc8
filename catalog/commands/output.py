"""How commands print: JSON documents on stdout and sizes a person reads at a glance."""

from __future__ import annotations

import click

from catalog.terminal import dumps_json


def echo_json(data) -> None:
    """JSON on stdout: valid, readable, and free of raw terminal controls."""
    click.echo(dumps_json(data))


def human_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (powers of 1000, as disks are sold)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"  # pragma: no cover
