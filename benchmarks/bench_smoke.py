"""How long `policygradex run --preset smoke` takes on every family (issue 16: "seconds to a minute").

    python benchmarks/bench_smoke.py [--families a,b] [--timeout 600] [--beside "what else ran"]

Each family runs the whole pipeline once through the CLI (one process, one torch thread, serial
executor) into a temporary directory; the table gives the wall-clock of the run and of each stage (from
the run's ``timings.json``). A run still going after ``--timeout`` seconds is stopped and reported as such.
Writes ``benchmarks/results/smoke.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
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
    ap.add_argument("--out", type=Path, default=RESULTS / "smoke.md")
    args = ap.parse_args()
    names = args.families.split(",") if args.families else families()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix="smoke-") as tmp:
            out = Path(tmp) / "run"
            start = time.perf_counter()
            try:
                p = subprocess.run([CLI, "run", "--family", name, "--out", str(out), "--preset", "smoke"],
                                   capture_output=True, text=True, env=env, timeout=args.timeout)
                status = "ok" if p.returncode == 0 else f"exit {p.returncode}: {p.stderr.strip().splitlines()[-1]}"
            except subprocess.TimeoutExpired:
                status = f"stopped after {args.timeout:.0f} s"
            wall = time.perf_counter() - start
            timings = json.loads((out / "timings.json").read_text()) if (out / "timings.json").exists() else {}
        stages = ", ".join(f"{k} {v:.0f}" for k, v in timings.items() if isinstance(v, (int, float)))
        print(f"{name:26s} {wall:7.1f} s  {status}  [{stages}]", flush=True)
        rows.append((name, wall, status, stages))
    lines = [
        "# `policygradex run --preset smoke` on every family",
        "",
        f"Regenerate: `python benchmarks/bench_smoke.py` ({dt.date.today().isoformat()}; {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; one process, one torch thread, serial "
        f"executor; runs stopped after {args.timeout:.0f} s).",
        f"Ran beside it: {args.beside or 'not recorded'}.",
        "",
        "| family | wall-clock (s) | result | stage seconds (timings.json) |",
        "|---|---:|---|---|",
        *(f"| `{n}` | {w:.1f} | {s} | {st or '–'} |" for n, w, s, st in rows),
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
