"""How large is a Meta-World training state, and how long does saving and loading its environments take?

    .venv/bin/python benchmarks/bench_env_state.py [--family metaworld-mt10] [--envs-per-task 1 4] [--note "..."]

`policygradex train` (and every training inside `run`) saves its state every 30 s so that a killed run
resumes; that state holds the vector environment's environments, pickled (``tasks.base.env_state``). This
benchmark builds the family's vector environment, steps it 37 times, then pickles and unpickles its
environments both ways, side by side in one process: **full** (everything, MuJoCo model and data included:
what every Meta-World environment pickled before) and **compact** (``MetaWorldTask.__getstate__``: the
integration state, the changed model arrays and the Python attributes; the simulator is rebuilt on load).
Writes ``benchmarks/results/env_state_<family>.md``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policygradex import tasks
from policygradex.io import write_text


def measure(envs: list[Any]) -> tuple[int, float, float]:
    """(bytes, seconds to pickle, seconds to unpickle) of ``envs``."""
    start = time.perf_counter()
    data = pickle.dumps(envs)
    dumped = time.perf_counter() - start
    start = time.perf_counter()
    pickle.loads(data)
    return len(data), dumped, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", default="metaworld-mt10", choices=["metaworld-mt10", "metaworld-mt50"])
    ap.add_argument("--envs-per-task", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--note", default="", help="conditions (what else ran on the cores)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    family = tasks.make(args.family)
    rows = []
    for per_task in args.envs_per_task:
        venv = family.make_vec(range(family.n), per_task)
        venv.reset(seed=0)
        actions = np.random.default_rng(0).uniform(-1, 1, (37, venv.num_envs, family.action_dim)).astype(np.float32)
        for a in actions:
            venv.step(a)
        envs = venv._env.envs  # type: ignore[attr-defined]
        compact = measure(envs)
        sources = [e._source for e in envs]
        for e in envs:  # the layout every Meta-World environment pickled before: everything
            e._source = None
        full = measure(envs)
        for e, s in zip(envs, sources, strict=True):
            e._source = s
        venv.close()
        rows.append((per_task, len(envs), full, compact))
    lines = [
        f"# Size and time of a `{family.name}` training state's environments",
        "",
        f"Produced by `.venv/bin/python benchmarks/bench_env_state.py --family {args.family} --envs-per-task "
        f"{' '.join(map(str, args.envs_per_task))}`. Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}; one process."
        + (f" Conditions: {args.note}" if args.note else ""),
        "",
        "Each row: the family's vector environment (every task, `--envs-per-task` copies) after a reset and 37 steps, "
        "pickled as the training state does, full (everything, the MuJoCo model and data included: what every "
        "Meta-World environment pickled before) and compact (the integration state, the changed model arrays and "
        "the environment's Python attributes; the simulator is rebuilt on load). The compact state continues "
        "bit-identically (`tests/test_families.py::test_metaworld_training_state_is_small_and_resumes_bit_identically`); "
        "the full one did not on pick-place, whose `init_left_pad` is a view of the simulator's arrays. The "
        "training state adds the policy, optimiser and rollout (under 1 MB for the default MLP) and is written "
        "to disk every 30 s by default.",
        "",
        "| envs per task | environments | full: MB | full: save s | full: load s | compact: MB | compact: save s | "
        "compact: load s | size ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for per_task, count, full, compact in rows:
        lines.append(f"| {per_task} | {count} | {full[0] / 1e6:.1f} | {full[1]:.2f} | {full[2]:.2f} | "
                     f"{compact[0] / 1e6:.2f} | {compact[1]:.2f} | {compact[2]:.2f} | {full[0] / compact[0]:.0f}× |")
    out = args.out or Path(__file__).parent / "results" / f"env_state_{family.name}.md"
    write_text(out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
