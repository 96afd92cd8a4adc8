"""demo: create a small demo library of generated photos to try catalog on."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(short_help="Create a small demo library of generated photos in DEST.")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
def demo(dest):
    """Create a demo library in DEST: generated photos with real EXIF, dated
    folders with spaces in their names, and one duplicate. Safe to rerun."""
    from catalog.demo import build_demo_library

    made = build_demo_library(dest)
    from catalog.terminal import escape

    click.echo(f"Demo library: {len(made)} files in {escape(dest)}")
