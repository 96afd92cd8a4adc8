"""What the bench/ scripts share (machine facts, markdown tables, their docs/benchmarks.md sections), written once."""

from __future__ import annotations

import os
import platform
import re
import shlex
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DOC = REPO / "docs" / "benchmarks.md"

# The columns of the analysis-side tables (prepare, quota, search).
MEASURE_HEAD = ("Measure", "catalog", "peer / baseline", "ratio", "goal", "result")


# -- the machine -----------------------------------------------------------------------------

def cpu_model() -> str:
    """The first `model name` of /proc/cpuinfo, or "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def nproc() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine() -> dict:
    """nproc, cpu, python and os, for the machine line of a table or doc section."""
    return {"nproc": nproc(), "cpu": cpu_model(), "python": platform.python_version(), "os": platform.platform()}


def load_average() -> float:
    """The 1-minute load average (nan where the OS has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def command_line(script: str, argv: list[str] | None) -> str:
    """How to run `bench/<script>` again with these arguments, from the repository root."""
    return shlex.join([".venv/bin/python", f"bench/{script}", *(sys.argv[1:] if argv is None else argv)])


def catalog_command() -> list[str]:
    """How to run this venv's `catalog` CLI."""
    script = Path(sys.executable).parent / "catalog"
    return [str(script)] if script.exists() else [sys.executable, "-m", "catalog"]


def roots_of(root: Path | list[Path]) -> list[Path]:
    """One root, or the several roots a library is scanned from."""
    return [root] if isinstance(root, Path) else list(root)


def quoted(root: Path | list[Path]) -> str:
    """The root(s) as shell words."""
    return shlex.join(str(r) for r in roots_of(root))


def add_common_options(parser, workdir_help: str, keep_help: str) -> None:
    """--workdir, --keep, --no-doc, --doc and --strict, as the analysis-side benchmarks take them."""
    parser.add_argument("--workdir", type=Path, default=None, help=workdir_help)
    parser.add_argument("--keep", action="store_true", help=keep_help)
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--doc", type=Path, default=DEFAULT_DOC)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")


def drop_page_cache() -> bool:
    """Sync and drop Linux's page cache so the next read comes from disk; False if not allowed."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


@contextmanager
def scratch_dir(args, prefix: str, say):
    """A temporary directory under --workdir (or the system's), removed afterwards unless --keep."""
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=args.workdir))
    try:
        yield work
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


# -- timing ----------------------------------------------------------------------------------

def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def interleaved(fa, fb, runs: int) -> tuple[list[float], list[float]]:
    """`runs` timings of each, alternating which goes first, after one untimed warm-up of each."""
    fa(), fb()  # warm-up: page cache, Pillow plugins, allocator
    ta, tb = [], []
    for i in range(runs):
        if i % 2:
            tb.append(timed(fb))
            ta.append(timed(fa))
        else:
            ta.append(timed(fa))
            tb.append(timed(fb))
    return ta, tb


# -- output ----------------------------------------------------------------------------------

def markdown_table(head, rows, right=()) -> str:
    """A markdown table; the columns whose index is in `right` are right-aligned."""
    lines = ["| " + " | ".join(head) + " |",
             "|" + "".join("---:|" if i in right else "---|" for i in range(len(head)))]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def bullets(lines) -> str:
    """A markdown list, one item a line."""
    return "\n".join("- " + line for line in lines)


def print_report(table: str, details: list[str]) -> None:
    """The table, a blank line, then the details as a list."""
    print(table)
    print()
    print(bullets(details))


def update_doc(path: Path, heading: str, section: str, *, new_file: str = "# Benchmarks\n") -> None:
    """Replace the `heading` section (up to the next `## `) by `section`, or append it; `new_file`
    starts the file when there is none. The file is read just before it is written."""
    text = path.read_text(encoding="utf-8") if path.exists() else new_file
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section.rstrip("\n") + "\n\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_section(path: Path, heading: str, section: str, command: str, say, *,
                  new_file: str = "# Benchmarks\n") -> None:
    """update_doc with `section` followed by the block every section ends with, the command that
    measured it; then `say` so."""
    section = section.rstrip("\n") + f"\n\nCommand:\n\n```\n{command}\n```\n"
    update_doc(path, heading, section, new_file=new_file)
    say(f"updated the {heading} section of {path}")


def exit_status(missed: list[str], strict: bool, say) -> int:
    """`say` which goals were missed; 1 when some were and --strict was given, else 0."""
    if missed:
        say("goals missed: " + "; ".join(missed))
    return 1 if (missed and strict) else 0
