"""Run the fault suite and write its figures to docs/reliability.md.

    .venv/bin/python tests/faults/report.py          (or: make reliability)

Every test under tests/faults/ is one case; the figures each case recorded (with the
`figures` fixture) become one row, grouped by the module's one-line docstring.
"""

from __future__ import annotations

import ast
import datetime
import platform
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DOC = ROOT / "docs" / "reliability.md"
COUNTS = ("crashes", "answers_lost", "paid_twice", "key_found", "originals_damaged", "keywords_lost",
          "not_restorable")


class Collector:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            figures = dict(report.user_properties).get("figures", {})
            self.rows.append({"nodeid": report.nodeid, "outcome": report.outcome,
                              "seconds": report.duration, **figures})
        elif report.when == "teardown" and self.rows and self.rows[-1]["nodeid"] == report.nodeid:
            self.rows[-1].update(dict(report.user_properties).get("figures", {}))


def _docstrings(path: Path) -> tuple[str, dict[str, str]]:
    tree = ast.parse(path.read_text())
    module = (ast.get_docstring(tree) or path.stem).splitlines()[0]
    tests = {node.name: (ast.get_docstring(node) or node.name.removeprefix("test_").replace("_", " ")).splitlines()[0]
             for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}
    return module, tests


def render(rows: list[dict], seconds: float) -> str:
    totals = {k: sum(int(r.get(k) or 0) for r in rows) for k in COUNTS}
    failed = [r for r in rows if r["outcome"] != "passed"]
    out = ["# Reliability: the fault suite and its figures", "",
           "Every row is one case from `tests/faults/`, run against the real CLI, Prefect flow, Datasette",
           "or write-back, with hostile servers on 127.0.0.1. Regenerate with", "",
           "    .venv/bin/python tests/faults/report.py      # or: make reliability", "",
           f"Last run: {datetime.date.today().isoformat()}, Python {platform.python_version()}, "
           f"{len(rows)} cases in {seconds:.0f} s, {len(failed)} not passing.", "",
           "## Totals", "", "| " + " | ".join(k.replace("_", " ") for k in ("cases", *COUNTS)) + " |",
           "|" + "---:|" * (len(COUNTS) + 1),
           "| " + " | ".join(str(v) for v in (len(rows), *totals.values())) + " |", ""]
    by_file: dict[str, list[dict]] = {}
    for row in rows:
        by_file.setdefault(row["nodeid"].split("::")[0], []).append(row)
    for file, items in sorted(by_file.items()):
        module, tests = _docstrings(ROOT / file)
        out += [f"## {module}", "", f"`{file}`", "",
                "| case | result | crashes | lost | paid twice | key found | other | measured |",
                "|---|---|---:|---:|---:|---:|---:|---|"]
        for r in items:
            name = r["nodeid"].split("::", 1)[1]
            base = name.split("[")[0]
            label = tests.get(base, base) + (f" `[{name.split('[', 1)[1]}`" if "[" in name else "")
            other = sum(int(r.get(k) or 0) for k in ("originals_damaged", "keywords_lost", "not_restorable"))
            note = str(r.get("note") or "").replace("|", "\\|")
            out.append(f"| {label} | {r['outcome']} | {r.get('crashes', 0)} | {r.get('answers_lost', 0)} | "
                       f"{r.get('paid_twice', 0)} | {r.get('key_found', 0)} | {other} | {note} |")
        out.append("")
    out += ["`other` adds originals damaged, user keywords lost and written files not restorable.", ""]
    return "\n".join(out)


def main() -> int:
    collector = Collector()
    started = time.perf_counter()
    code = pytest.main([str(HERE), "-q", "-p", "no:cacheprovider", *sys.argv[1:]], plugins=[collector])
    DOC.write_text(render(collector.rows, time.perf_counter() - started))
    print(f"wrote {DOC.relative_to(ROOT)}: {len(collector.rows)} cases")
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
