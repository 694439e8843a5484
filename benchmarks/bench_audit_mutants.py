"""The hand-made bugs of the test audit (issue 17), re-applied to today's code: does the suite catch each?

    python benchmarks/bench_audit_mutants.py          # writes benchmarks/results/audit_mutants.md (~10 min)

The audit that opened issue 17 changed the code on purpose and found that the suite passed anyway. Each
bug below is that change, written as a text replacement in a scratch copy of ``src/`` and ``tests/``; the
tests named with it run (``-x``: stop at the first failure) against the copy, and the table says which test
caught the bug, or that none did. mutmut (``bench_mutation.py``) cannot make these: they replace whole
statements or lines, not single operators. A replacement that no longer matches the code fails the script
(the audit must be kept in step with the code, not silently skipped).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Bug:
    name: str
    file: str  # under src/policygradex/
    old: str
    new: str
    tests: tuple[str, ...]  # pytest arguments, relative to the repository root


CLUSTER = ("tests/test_known_answers.py", "tests/test_cluster.py", "tests/test_mutation_kills.py")
ESTIMATE = ("tests/test_known_answers.py", "tests/test_features.py", "tests/test_mutation_kills.py")
SDP_ROUNDING = "labels = _repair(u, _kmeans(embedding, k, seed=0), k)\n    labels = _iterated_local_search(u, labels, k)"

BUGS = [
    Bug("SDP rounding ignores the SDP solution (tasks dealt round-robin)", "grouping/cluster.py",
        SDP_ROUNDING, "labels = _iterated_local_search(u, np.arange(n) % k, k)", CLUSTER),
    Bug("SDP rounding starts the local search from all-zero labels", "grouping/cluster.py",
        SDP_ROUNDING, "labels = _iterated_local_search(u, _repair(u, np.zeros(n, dtype=np.int64), k), k)", CLUSTER),
    Bug("SDP rounding without the iterated local search", "grouping/cluster.py",
        SDP_ROUNDING, "labels = _repair(u, _kmeans(embedding, k, seed=0), k)", CLUSTER),
    Bug("SDP rounding never repairs k-means (fewer than k groups possible)", "grouping/cluster.py",
        SDP_ROUNDING, "labels = _iterated_local_search(u, _kmeans(embedding, k, seed=0), k)", CLUSTER),
    Bug("SDP solver failure: no fallback to SCS", "grouping/cluster.py",
        '[chosen] + [s for s in ("SCS",) if s != chosen]', "[chosen]", CLUSTER),
    Bug("surrogate scores ignore the rescaling factor", "gradex/scores.py",
        "w = weights if coef_scale is None else weights * coef_scale[:, None]", "w = weights",
        ESTIMATE),
    Bug("features: advantages reversed relative to the gradients", "gradex/features.py",
        "advantages=batch.advantages[rows].clone()", "advantages=-batch.advantages[rows].clone()",
        ESTIMATE),
    Bug("features: stored log-probs off by a constant", "gradex/features.py",
        "logp=batch.logp[rows].clone()", "logp=batch.logp[rows].clone() + 0.01",
        ESTIMATE),
    Bug("resume: every finished score chunk is scored again", "pipeline.py",
        "todo = [c for c in starts if not run.store.chunk_path(c).exists()]", "todo = list(starts)",
        ("tests/test_resume_kill.py", "tests/test_pipeline.py", "tests/test_crash_injection.py")),
    Bug("CLI: bad input exits 1 instead of the documented 2", "cli.py",
        'print(f"error: {e}", file=sys.stderr)\n        return 2', 'print(f"error: {e}", file=sys.stderr)\n        return 1',
        ("tests/test_cli_commands.py", "tests/test_bad_inputs.py")),
    Bug("CLI: Ctrl-C exits 1 instead of 130", "cli.py",
        "return 130", "return 1", ("tests/test_resume_kill.py", "tests/test_cli_commands.py", "tests/test_pipeline.py")),
]


def first_failure(output: str) -> str:
    m = re.search(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", output, re.M)
    return m.group(1) if m else "(the run failed without a test failure: see the log)"


def run_bug(bug: Bug, scratch: Path) -> tuple[str, str, float]:
    target = scratch / "src" / "policygradex" / bug.file
    original = target.read_text()
    if original.count(bug.old) != 1:
        raise SystemExit(f"{bug.name!r}: the text to replace occurs {original.count(bug.old)} times in "
                         f"{bug.file}; update BUGS in {Path(__file__).name} to today's code")
    target.write_text(original.replace(bug.old, bug.new))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(scratch / "src"), OMP_NUM_THREADS="1")
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-n", "2",
                        "-m", "not slow", *bug.tests], cwd=scratch, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    target.write_text(original)
    if p.returncode == 0:
        return "survived", "–", seconds
    failed = re.search(r"^(FAILED|ERROR) ", p.stdout, re.M)
    if p.returncode in (1, 2) and failed:  # xdist reports a run stopped by -x as interrupted (2)
        return "caught", first_failure(p.stdout), seconds
    return f"error (pytest exit {p.returncode})", first_failure(p.stdout + p.stderr), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beside", default="", help="what else ran on the machine meanwhile (for the table)")
    ap.add_argument("--out", type=Path, default=RESULTS / "audit_mutants.md")
    args = ap.parse_args()
    rows = []
    total = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="audit-") as tmp:
        scratch = Path(tmp)
        for part in ("src", "tests"):
            shutil.copytree(ROOT / part, scratch / part, ignore=shutil.ignore_patterns("__pycache__"))
        for f in ("pyproject.toml", "README.md", "Makefile"):
            shutil.copy(ROOT / f, scratch / f)
        if (ROOT / "conftest.py").exists():
            shutil.copy(ROOT / "conftest.py", scratch / "conftest.py")
        for bug in BUGS:
            status, test, seconds = run_bug(bug, scratch)
            print(f"{status:9s} {seconds:6.0f} s  {bug.name}: {test}", flush=True)
            rows.append((bug, status, test, seconds))
    caught = sum(s == "caught" for _, s, _, _ in rows)
    lines = [
        "# The audit's hand-made bugs against today's suite (issue 17)",
        "",
        "Regenerate: `python benchmarks/bench_audit_mutants.py`. Each bug is applied to a scratch copy of the code, "
        "and the listed tests run against it with `pytest -x -n 2 -m 'not slow'`.",
        "",
        f"- Date: {dt.date.today().isoformat()}; machine: {platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; total {time.perf_counter() - total:.0f} s.",
        f"- Ran beside it: {args.beside or 'not recorded'}.",
        f"- **{caught} of {len(rows)} bugs caught.**",
        "",
        "| bug | file | tests run | result | first failing test | seconds |",
        "|---|---|---|---|---|---:|",
    ]
    for bug, status, test, seconds in rows:
        tests = ", ".join(t.removeprefix("tests/") for t in bug.tests)
        lines.append(f"| {bug.name} | `{bug.file}` | {tests} | {status} | `{test}` | {seconds:.0f} |")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    if caught != len(rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
