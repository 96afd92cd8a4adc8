"""Where a photo's XMP sidecar lives, and how it is written (atomically, its folder created)."""

from __future__ import annotations

import os


def sidecar_path(photo: str, *, style: str = "ext", sidecar_dir: str | None = None,
                 root: str | None = None) -> str:
    """Where a photo's sidecar lives: `IMG.JPG.xmp` (darktable, digiKam) or `IMG.xmp` (Lightroom),
    beside the photo or, for read-only shares, at the same relative path under `sidecar_dir`."""
    photo = os.fspath(photo)
    if style not in ("ext", "base"):
        raise ValueError(f"unknown sidecar style {style!r} (use 'ext' for IMG.JPG.xmp or 'base' for IMG.xmp)")
    target = photo + ".xmp" if style == "ext" else os.path.splitext(photo)[0] + ".xmp"
    if sidecar_dir is None:
        return target
    if root is None:
        raise ValueError("a sidecar folder needs the library root the photo's path is relative to")
    rel = os.path.relpath(os.path.abspath(target), os.path.abspath(root))
    if rel == os.curdir or rel == os.pardir or rel.startswith(os.pardir + os.sep):
        raise ValueError(f"{photo!r} is not inside the library root {root!r}")
    return os.path.join(os.fspath(sidecar_dir), rel)


def write_sidecar(path: str, packet: bytes, **options):
    """Create or replace a sidecar atomically (see atomic.atomic_write, which takes `options`),
    creating its folder in a mirror tree; a crash or a full disk never leaves half a sidecar."""
    from catalog.writeback.atomic import atomic_write

    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    return atomic_write(os.fspath(path), packet, **options)
