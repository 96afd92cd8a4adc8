"""One file read for the scan: its identity and header facts, or a readable error, never an exception."""

from __future__ import annotations

import errno
import io
from dataclasses import dataclass, field

from catalog.containers import BrokenImage
from catalog.errors import FileChanged, NotRegularFile
from catalog.identity import Identity, describe_non_image, hash_buffer, load, sniff
from catalog.imagefacts import ImageFacts, facts_of, open_header
from catalog.libfile import identity_stat, open_library_file
from catalog.similar.store import opened_fingerprint_columns
from catalog.walk import too_long_message


@dataclass(frozen=True)
class Inspection:
    identity: Identity | None = None
    facts: ImageFacts | None = None
    error: str | None = None
    error_kind: str | None = None
    reread: bool = False  # the next scan must read the file again, whatever its stat says
    fingerprint: dict = field(default_factory=dict)  # photos columns (catalog.similar.store)


def inspect_file(path: str, max_image_pixels: int, *, follow_symlinks: bool = True) -> Inspection:
    """Identity and facts of one file, or a readable error. Never raises for bad input.

    The file is read once: identity, facts and the fingerprint's decode all come from the
    same bytes (a file of LARGE_FILE or more is streamed, and its header read again). It
    must stay the same (size, mtime, inode) from open to the last read: one that changes
    underneath (truncated, still being copied in) is reported as changed, and its ledger
    row makes the next scan read it again.
    """
    try:
        with open_library_file(path, follow_symlinks=follow_symlinks) as f:
            before = identity_stat(f)
            size = before[0]
            if size == 0:
                return Inspection(error="empty file (0 bytes)", error_kind="empty")
            try:
                buf = load(f, size)
                head = bytes(buf[:32])
                fmt = sniff(head)
                if fmt is None:
                    return Inspection(error=f"not an image: {describe_non_image(head)}",
                                      error_kind="not_an_image")
                identity = hash_buffer(fmt, buf)
                if isinstance(buf, bytes):
                    source = io.BytesIO(buf)
                else:  # a FileView: Pillow reads the header (and decodes) from the file itself
                    f.seek(0)
                    source = f
                del buf
                with open_header(source) as image:
                    facts = facts_of(image, max_image_pixels=max_image_pixels)
                    fingerprint = opened_fingerprint_columns(image, facts.orientation)
            except BrokenImage:
                if identity_stat(f) != before:
                    raise FileChanged(errno.EIO, "changed") from None
                raise
            if identity_stat(f) != before:
                raise FileChanged(errno.EIO, "changed")
        return Inspection(identity=identity, facts=facts, fingerprint=fingerprint)
    except BrokenImage as exc:
        return Inspection(error=str(exc), error_kind=exc.kind)
    except FileChanged:
        return Inspection(error="the file changed while it was read (still being written?); "
                                "it will be read again by the next scan",
                          error_kind="changed_while_reading", reread=True)
    except NotRegularFile as exc:
        return Inspection(error=exc.strerror, error_kind="not_a_file")
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return Inspection(error=too_long_message(path), error_kind="path_too_long")
        return Inspection(error=f"cannot read file: {exc.strerror or exc}", error_kind="unreadable")


def crashed() -> Inspection:
    """The answer for a file whose reading killed the process reading it, twice (see catalog.inspectors)."""
    return Inspection(error="reading this file crashed the image decoder (twice); it is skipped, "
                            "and read again when it changes", error_kind="crashed_reader")
