"""How long `policygradex run --preset smoke` takes on every family (issue 16: "seconds to a minute").

    python benchmarks/bench_smoke.py [--families a,b] [--archs mlp,sm] [--timeout 600] [--beside "what else ran"]
        [--run-args "--estimate.score surrogate"] [--out FILE]

Each family runs the whole pipeline once through the CLI (one process, one torch thread, serial
executor) into a temporary directory; the table gives the wall-clock of the run and of each stage (from
the run's ``timings.json``) and the mean score of θ* and of the group policies (``results.json``). With
``--archs`` every family runs once per policy architecture (``--meta.arch``; issue 14). A run still going
after ``--timeout`` seconds is stopped and reported as such. ``--run-args`` are added to every run's
command line (e.g. rollout-free scores where rollouts are too slow for a smoke run, as on Meta-World).
Writes ``benchmarks/results/smoke.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CLI = str(Path(sys.executable).parent / "policygradex")


def families() -> list[str]:
    out = subprocess.run([CLI, "families"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default="", help="comma-separated (default: every family)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds before a run is stopped")
    ap.add_argument("--beside", default="", help="what else ran on the machine meanwhile (for the table)")
    ap.add_argument("--archs", default="mlp", help="comma-separated --meta.arch values (default: mlp)")
    ap.add_argument("--run-args", default="", help="more `policygradex run` arguments for every run (one string)")
    ap.add_argument("--out", type=Path, default=RESULTS / "smoke.md")
    args = ap.parse_args()
    names = args.families.split(",") if args.families else families()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def write() -> None:
        regen = "".join(f" --{k} {v}" for k, v in (("families", args.families), ("archs", args.archs)) if v and v != "mlp")
        regen += f' --run-args "{args.run_args}"' if args.run_args else ""
        regen += f" --out {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}" if args.out != RESULTS / "smoke.md" else ""
        lines = [
            f"# `policygradex run --preset smoke{' ' + args.run_args if args.run_args else ''}` on {'these families' if args.families else 'every family'}",
            "",
            f"Regenerate: `python benchmarks/bench_smoke.py{regen}` ({dt.date.today().isoformat()}; {platform.node()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}; one process, one torch thread, serial "
            f"executor; runs stopped after {args.timeout:.0f} s).",
            f"Ran beside it: {args.beside or 'not recorded'}.",
            "",
            "| family | `--meta.arch` | wall-clock (s) | result | mean score θ* → groups | stage seconds (timings.json) |",
            "|---|---|---:|---|---|---|",
            *(f"| `{n}` | `{a}` | {w:.1f} | {s} | {sc} | {st or '–'} |" for n, a, w, s, sc, st in rows),
        ]
        args.out.write_text("\n".join(lines) + "\n")

    rows: list[tuple[str, str, float, str, str, str]] = []
    for name in names:
        for arch in args.archs.split(","):
            with tempfile.TemporaryDirectory(prefix="smoke-") as tmp:
                out = Path(tmp) / "run"
                cmd = [CLI, "run", "--family", name, "--out", str(out), "--preset", "smoke", "--meta.arch", arch,
                       *shlex.split(args.run_args)]
                start = time.perf_counter()
                try:
                    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
                    status = "ok" if p.returncode == 0 else f"exit {p.returncode}: {p.stderr.strip().splitlines()[-1]}"
                except subprocess.TimeoutExpired:
                    status = f"stopped after {args.timeout:.0f} s"
                wall = time.perf_counter() - start
                timings = json.loads((out / "timings.json").read_text()) if (out / "timings.json").exists() else {}
                results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
            stages = ", ".join(f"{k} {v:.0f}" for k, v in timings.items() if isinstance(v, (int, float)))
            score = (f"{results['mean_meta']:.3f} → {results['mean_group_policy']:.3f}"
                     if "mean_meta" in results and "mean_group_policy" in results else "–")
            print(f"{name:26s} {arch:6s} {wall:7.1f} s  {status}  {score}  [{stages}]", flush=True)
            rows.append((name, arch, wall, status, score, stages))
            write()  # after every run, so a long benchmark stopped midway keeps what it measured
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
