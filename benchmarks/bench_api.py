"""The README's Python snippets against their CLI equivalents, side by side (issue 11, item 5).

    .venv/bin/python benchmarks/bench_api.py [--repeats 2] [--note "conditions"]

Each measurement is a fresh Python process (imports included), one after the other, alternating, on the same
machine: `pipeline.run(tasks.make("planted-toy"), RunConfig(k=3, seed=0, preset="smoke"), out=...)` against
`policygradex run --family planted-toy --k 3 --seed 0 --preset smoke --out ...`, and the README's training snippet
(`rl.ppo.train` on planted-toy, smoke budget, then `evaluate`) against `policygradex train --family planted-toy
--preset smoke --seed 0`. Neither process is told a thread count: the library picks its own. For contrast the
pipeline snippet also runs with torch's own default thread count (``threads=torch.get_num_threads()`` read at
start-up, i.e. what the library did before issue 11). Writes benchmarks/results/api.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

PIPELINE_SNIPPET = """
import sys
from policygradex import pipeline, tasks
family = tasks.make("planted-toy")
result = pipeline.run(family, pipeline.RunConfig(k=3, seed=0, preset="smoke"), out=sys.argv[1]{threads})
print(result.groups)
"""

TRAIN_SNIPPET = """
from policygradex import tasks
from policygradex.rl.ppo import ppo_config_for, train
from policygradex.rl.evaluate import evaluate
family = tasks.make("planted-toy")
cfg = ppo_config_for(family, "smoke")
result = train(family, range(family.n), cfg, seed=0)
scores = evaluate(result.policy, family, range(family.n), episodes=20, seed=1)
print(scores.mean_return)
"""


def timed(cmd: list[str]) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=ROOT)
    return time.perf_counter() - start, out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--note", default="", help="conditions (what else ran on the machine)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/api.md")
    args = ap.parse_args()
    cli = [str(Path(PY).with_name("policygradex"))]
    rows: dict[str, list[float]] = {}
    outputs: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            cases = {
                "pipeline.run (README snippet)": [PY, "-c", PIPELINE_SNIPPET.format(threads=""), f"{tmp}/api{r}"],
                "policygradex run (CLI)": cli + ["run", "--family", "planted-toy", "--k", "3", "--seed", "0", "--preset",
                                                  "smoke", "--out", f"{tmp}/cli{r}", "--log-format", "plain"],
                "rl.ppo.train + evaluate (README snippet)": [PY, "-c", TRAIN_SNIPPET],
                "policygradex train (CLI)": cli + ["train", "--family", "planted-toy", "--preset", "smoke", "--seed", "0",
                                                    "--out", f"{tmp}/train{r}", "--log-format", "plain"],
            }
            if r == 0:
                cases["pipeline.run with torch's default thread count (before issue 11)"] = [
                    PY, "-c", "import torch\n" + PIPELINE_SNIPPET.format(threads=", threads=torch.get_num_threads()"),
                    f"{tmp}/default{r}"]
            for name, cmd in cases.items():
                seconds, last = timed(cmd)
                rows.setdefault(name, []).append(seconds)
                outputs[name] = last
                print(f"{name}: {seconds:.1f} s", flush=True)
        groups = {json.dumps(json.loads((Path(tmp) / d / "groups.json").read_text())["groups"])
                  for d in ("api0", "cli0", "default0")}
    api, run_cli = min(rows["pipeline.run (README snippet)"]), min(rows["policygradex run (CLI)"])
    tr, tr_cli = min(rows["rl.ppo.train + evaluate (README snippet)"]), min(rows["policygradex train (CLI)"])
    lines = [
        "# The Python API against the CLI (issue 11, item 5)",
        "",
        f"Produced by `.venv/bin/python benchmarks/bench_api.py --repeats {args.repeats}`. Machine: "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__} "
        f"(torch's default thread count here: {torch.get_num_threads()}). Each figure is a fresh process including "
        "its imports, best of the repeats, the cases alternating; no thread count is set by the caller or the "
        "environment (OMP_NUM_THREADS unset)." + (f" Conditions: {args.note}" if args.note else ""),
        "",
        "| what | wall-clock (s), each repeat | best (s) |",
        "|---|---|---:|",
    ]
    for name, secs in rows.items():
        lines.append(f"| {name} | {', '.join(f'{s:.1f}' for s in secs)} | {min(secs):.1f} |")
    lines += [
        "",
        f"Ratios (best): `pipeline.run` / CLI run = {api / run_cli:.2f}; `train` snippet / CLI train = {tr / tr_cli:.2f} "
        f"(the CLI train also writes a checkpoint and a run directory). Groups found: {sorted(groups)} "
        f"({'the same' if len(groups) == 1 else 'different'} in the three pipeline runs).",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
