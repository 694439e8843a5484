"""Mutation checks of the estimator's maths with mutmut 3 (issue 17, item 5).

    python benchmarks/bench_mutation.py            # run (or resume) mutmut, write benchmarks/results/mutation.md
    python benchmarks/bench_mutation.py --fresh    # start from scratch (deletes mutants/ and the survivor record)
    python benchmarks/bench_mutation.py --report-only   # rewrite the table from the last run's results

What is mutated and which tests run is configured in ``[tool.mutmut]`` of ``pyproject.toml``:
``gradex/``, ``grouping/`` and ``rl/gae.py``, against the fast unit tests of those packages. mutmut keeps
its results in ``mutants/``; a rerun only retests what changed. Every mutant that ever survived is
remembered in ``benchmarks/results/mutation_survivors.json``; when a later run kills it, the tests that
kill it are found by running them against that mutant, and the table says which. Survivors that no
test can kill are explained in ``benchmarks/mutation_survivors.py``, keyed on the mutant's change (the table marks
any survivor it does not explain, with that key). mutmut renumbers a function's mutants when its code changes, so
every run re-reads each recorded mutant's change and starts a new record where it differs.
Long: run it niced in the background (``nohup nice -n 10 python benchmarks/bench_mutation.py &``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SURVIVORS = RESULTS / "mutation_survivors.json"
RUNS = RESULTS / "mutation_runs.json"
MUTMUT = [str(Path(sys.executable).parent / "mutmut")]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutation_survivors import explain, key  # noqa: E402  (why each survivor survives)


def package_of(mutant: str) -> str:
    """``policygradex.gradex.scores.x_score_surrogate__mutmut_3`` → ``gradex/`` (``rl/gae.py`` for GAE)."""
    parts = mutant.split(".")
    return "rl/gae.py" if parts[1] == "rl" else f"{parts[1]}/"


def file_of(mutant: str) -> str:
    parts = mutant.split(".")
    return "/".join(parts[1:-1]) + ".py"


def mutmut(*args: str, check: bool = True) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # mutmut sets up sys.path itself
    env["OMP_NUM_THREADS"] = "1"
    p = subprocess.run([*MUTMUT, *args], cwd=ROOT, capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        raise SystemExit(f"mutmut {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p.stdout


def statuses() -> dict[str, str]:
    out = {}
    for line in mutmut("results", "--all", "true").splitlines():
        m = re.match(r"\s+(\S+): (.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


DIFFS = """
import json, sys
from mutmut.__main__ import find_mutant, get_diff_for_mutant
print(json.dumps({n: get_diff_for_mutant(n, path=find_mutant(n).path) for n in json.loads(sys.stdin.read())}))
"""


def diffs_of(mutants: list[str]) -> dict[str, str]:
    """Each mutant's changed lines, as `mutmut show` prints them (one process for all: about 0.1 s each)."""
    if not mutants:
        return {}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([sys.executable, "-c", DIFFS], input=json.dumps(mutants), cwd=ROOT, capture_output=True,
                       text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"reading the mutants' changes failed:\n{p.stderr[-3000:]}")
    out = {}
    for name, text in json.loads(p.stdout.strip().splitlines()[-1]).items():
        lines = [ln for ln in text.splitlines() if ln.startswith(("+", "-")) and not ln.startswith(("+++", "---"))]
        out[name] = "\n".join(lines)
    return out


PROBE = """
import contextlib, io, json, os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "src"))
import pytest

class First:
    def __init__(self):
        self.failed = []

    def pytest_runtest_logreport(self, report):
        if report.failed and not self.failed:
            self.failed.append(report.nodeid)

names, selection, extra = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
out = {}
for name in names:
    os.environ["MUTANT_UNDER_TEST"] = name
    first = First()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        pytest.main(["-q", "-x", "-p", "no:cacheprovider", "-p", "no:xdist", *extra, *selection], plugins=[first])
    out[name] = first.failed
print(json.dumps(out))
"""


def killing_tests(mutants: list[str], selection: list[str], extra: list[str]) -> dict[str, list[str]]:
    """For each mutant, the first selected test that fails with it switched on, found by running the
    selection in mutmut's copy of the tree (one process for all: the trampolines read MUTANT_UNDER_TEST)."""
    if not mutants:
        return {}
    # The tests written against survivors first: they are what kills most of them, so -x stops early.
    selection = sorted(selection, key=lambda t: "mutation_kills" not in t)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MUTANT_UNDER_TEST")}
    env["OMP_NUM_THREADS"] = "1"
    p = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(mutants), json.dumps(selection), json.dumps(extra)],
        cwd=ROOT / "mutants", capture_output=True, text=True, env=env,
    )
    if p.returncode != 0:
        raise SystemExit(f"the probe failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def describe_machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fresh", action="store_true", help="delete mutants/ and start over")
    ap.add_argument("--report-only", action="store_true", help="only rewrite the table from mutants/")
    ap.add_argument("--max-children", type=int, default=1, help="mutants tested in parallel (default 1)")
    ap.add_argument("--beside", default="", help="what else ran on the machine meanwhile (for the table)")
    ap.add_argument("--out", type=Path, default=RESULTS / "mutation.md")
    ap.add_argument("--record-run", action="store_true", help="with --report-only: record mutants/ as a run")
    ap.add_argument("--retest", choices=["all", "unexplained"], default="all",
                    help="earlier survivors retested by name: all (default; also catches an explanation that a "
                    "new test proves wrong) or only those without an explanation (faster)")
    args = ap.parse_args()

    wall, fresh = None, args.fresh
    if not args.report_only:
        if args.fresh:
            # A fresh run measures the code as it is now: mutant names are numbered per function, so the
            # survivors recorded for older code may name other mutants today. Start their record anew.
            if (ROOT / "mutants").exists():
                shutil.rmtree(ROOT / "mutants")
            SURVIVORS.unlink(missing_ok=True)
        start = time.perf_counter()
        mutmut("run", "--max-children", str(args.max_children), check=False)
        # Without --fresh, survivors of earlier runs are retested by name: mutmut otherwise keeps a result
        # once it has one, and they are what new tests were written for. (A changed test selection makes
        # mutmut retest everything anyway.)
        history = json.loads(SURVIVORS.read_text()) if SURVIVORS.exists() else {}
        retest = sorted(
            n for n, e in history.items()
            if e.get("status") == "survived" and (args.retest == "all" or not explain(n, e["diff"]))
        )
        # Mutants that no selected test reached get another chance too: new tests may reach them now.
        retest += sorted(n for n, s in statuses().items() if s == "no tests") if not args.fresh else []
        if retest and not args.fresh:
            mutmut("run", "--max-children", str(args.max_children), *retest, check=False)
        wall = time.perf_counter() - start
        (ROOT / "mutants" / "bench_wall_seconds.txt").write_text(f"{wall:.0f} {int(args.fresh)}\n")
    elif (ROOT / "mutants" / "bench_wall_seconds.txt").exists():
        recorded = (ROOT / "mutants" / "bench_wall_seconds.txt").read_text().split()
        wall, fresh = float(recorded[0]), len(recorded) > 1 and recorded[1] == "1"

    # The configuration the last run used: mutmut copies pyproject.toml (and the tests) into mutants/.
    cfg = tomllib.loads((ROOT / "mutants" / "pyproject.toml").read_text())["tool"]["mutmut"]
    selection = list(cfg["pytest_add_cli_args_test_selection"])
    status = statuses()
    if not status:
        raise SystemExit("mutmut has no results; run without --report-only first")
    history = json.loads(SURVIVORS.read_text()) if SURVIVORS.exists() else {}
    # mutmut renumbers a function's mutants whenever its code changes, so a recorded name may mean another
    # mutant today: a name whose change differs from the recorded one starts a new record if it survives,
    # and its old record (a survivor that is gone, or was killed under its old number) is dropped.
    names = sorted(n for n in set(history) | {n for n, s in status.items() if s == "survived"} if n in status)
    for name, current in diffs_of(names).items():
        if name not in history or history[name]["diff"] != current:
            if status[name] == "survived":
                history[name] = {"diff": current}
            else:
                del history[name]
    for name, entry in history.items():
        entry["status"] = status.get(name, "gone (the mutated code changed)")
    todo = [n for n, e in history.items() if e["status"] in ("killed", "timeout") and not e.get("killed_by")]
    for name, tests in killing_tests(todo, selection, list(cfg.get("pytest_add_cli_args", []))).items():
        history[name]["killed_by"] = tests
    SURVIVORS.write_text(json.dumps(history, indent=2, sort_keys=True) + "\n")

    by_package: dict[str, Counter] = defaultdict(Counter)
    by_file: dict[str, Counter] = defaultdict(Counter)
    for name, s in status.items():
        by_package[package_of(name)][s] += 1
        by_file[file_of(name)][s] += 1

    runs = json.loads(RUNS.read_text()) if RUNS.exists() else []
    if not args.report_only or args.record_run:
        runs.append({
            "date": dt.date.today().isoformat(),
            "wall_minutes": None if wall is None else round(wall / 60),
            "beside": args.beside,
            "tests": selection,
            "packages": {p: dict(c) for p, c in sorted(by_package.items())},
        })
        RUNS.write_text(json.dumps(runs, indent=2) + "\n")
    # --report-only rewrites the last run's table: its conditions are that run's, unless given anew.
    beside = args.beside or (runs[-1].get("beside", "") if runs else "")

    def score(c: Counter) -> str:
        tested = sum(v for k, v in c.items() if k not in ("skipped", "not checked", "no tests"))
        killed = c["killed"] + c["timeout"]
        return f"{100 * killed / tested:.1f}%" if tested else "–"

    def row(label: str, c: Counter) -> str:
        other = sum(v for k, v in c.items() if k not in ("killed", "timeout", "survived", "no tests", "not checked"))
        return (f"| {label} | {sum(c.values())} | {c['killed']} | {c['timeout']} | {c['survived']} | {c['no tests']} "
                f"| {c['not checked']} | {other} | **{score(c)}** |")

    head = ["| | mutants | killed | timeout | survived | no tests | not checked | other | score |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines = [
        "# Mutation checks: gradex/, grouping/, rl/gae.py",
        "",
        f"Regenerate: `nohup nice -n 10 python benchmarks/bench_mutation.py &` (mutmut "
        f"{_version('mutmut')}, config in `[tool.mutmut]` of `pyproject.toml`).",
        "",
        f"- Date: {dt.date.today().isoformat()}; machine: {describe_machine()}.",
        f"- Wall-clock of the last `mutmut run`: {f'{wall / 60:.0f} min' if wall is not None else 'not recorded'}"
        + (" (a fresh run of every mutant)." if fresh else " (an incremental run: only mutants whose function or"
           " tests changed, and earlier survivors, were retested)."),
        f"- Ran beside it: {beside or 'not recorded'}.",
        f"- Tests run against each mutant (only those that call the mutated function): {', '.join(selection)}.",
        "- Score = (killed + timeout) / (mutants that were tested). \"no tests\": no selected test calls the"
        " function; \"not checked\": the run did not reach it.",
        "",
        "## Score per package",
        "",
        *head,
        *(row(f"`{p}`", by_package[p]) for p in sorted(by_package)),
        row("**all**", sum(by_package.values(), Counter())),
        "",
        "## Every recorded run",
        "",
        "| run | date | wall-clock | tests run against the mutants | " + " | ".join(f"`{p}`" for p in sorted(by_package))
        + " | all |",
        "|---|---|---:|---|" + "---:|" * (len(by_package) + 1),
        *(
            f"| {i + 1} | {r['date']} | {r['wall_minutes']} min | {', '.join(t.removeprefix('tests/') for t in r['tests'])} | "
            + " | ".join(score(Counter(r["packages"].get(p, {}))) for p in sorted(by_package))
            + f" | {score(sum((Counter(c) for c in r['packages'].values()), Counter()))} |"
            for i, r in enumerate(runs)
        ),
        "",
        "## Score per file",
        "",
        *head,
        *(row(f"`{f}`", by_file[f]) for f in sorted(by_file)),
        "",
        "## Survivors of earlier runs, killed now",
        "",
        "| mutant | change | killed by |",
        "|---|---|---|",
    ]
    for name, entry in sorted(history.items()):
        if entry["status"] in ("killed", "timeout"):
            tests = "<br>".join(f"`{t}`" for t in entry.get("killed_by") or ["(not found: killed only by a timeout?)"])
            lines.append(f"| `{name}` | {_cell(entry['diff'])} | {tests} |")
    lines += ["", "## Survivors now", "", "| mutant | change | why it survives |", "|---|---|---|"]
    for name, entry in sorted(history.items()):
        if entry["status"] == "survived":
            why = explain(name, entry["diff"]) or f"**not explained yet** (key `{key(entry['diff'])}`)"
            lines.append(f"| `{name}` | {_cell(entry['diff'])} | {why} |")
    not_checked = sorted(n for n, s in status.items() if s == "not checked")
    if not_checked:
        lines += ["", f"Not checked in this run ({len(not_checked)}): the run was stopped before reaching them.", ""]
        lines += [f"- `{n}`" for n in not_checked]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


def _cell(diff: str) -> str:
    return "<br>".join(f"`{ln.strip()}`" for ln in diff.splitlines()[:4]).replace("|", "\\|") or "–"


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
