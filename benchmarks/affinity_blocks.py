"""Where does the estimated affinity differ from the ground truth's? Mean affinity inside and across task blocks,
per seed, for the estimate (the run's ``affinity.npy``) and the ground truth (``ground_truth/affinity.npy``), with
θ*'s score per task and the spread of each task's scores over subsets (``signal.json``) (issue #12).

    .venv/bin/python benchmarks/affinity_blocks.py --work DIR --blocks 5,6,7,9 0,1,2,3,4,8 [--out FILE]

``--work`` is a `policygradex compare-seeds` folder (``DIR/seed_<s>/``, each with ``ground-truth`` run); every
block is a comma-separated list of task indices. Reads only; trains nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from policygradex.io import read_json, write_text


def block_mean(u: np.ndarray, rows: list[int], cols: list[int]) -> float:
    """Mean of U[i, j] over i in ``rows``, j in ``cols``, i ≠ j."""
    vals = [u[i, j] for i in rows for j in cols if i != j]
    return float(np.mean(vals)) if vals else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--blocks", nargs="+", required=True, help="task blocks, each comma-separated: 5,6,7,9 0,1,2")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    try:
        blocks = [[int(t) for t in b.split(",")] for b in args.blocks]
    except ValueError:
        raise SystemExit(f"error: --blocks {' '.join(args.blocks)}: each block is comma-separated task indices, e.g. 5,6,7,9") from None
    seeds = sorted(int(p.name.split("_")[1]) for p in args.work.glob("seed_*") if (p / "ground_truth" / "affinity.npy").exists())
    if not seeds:
        raise SystemExit(f"error: no seed_<s>/ground_truth/affinity.npy under --work {args.work}; run compare-seeds --with-truth there")
    pairs = [(a, b) for a in range(len(blocks)) for b in range(a, len(blocks))]
    names = [f"{{{','.join(map(str, blocks[a]))}}}×{{{','.join(map(str, blocks[b]))}}}" for a, b in pairs]
    family = read_json(args.work / f"seed_{seeds[0]}" / "config.json")["family"]["name"]
    lines = [
        f"# Affinity inside and across task blocks: estimate vs ground truth (`{family}`, seeds {seeds})",
        "",
        f"Produced by `.venv/bin/python benchmarks/affinity_blocks.py --work DIR --blocks {' '.join(args.blocks)}` from the "
        "runs' own files (no training). Each cell: the mean of U[i, j] (i ≠ j) over the block pair, estimate / ground truth.",
        "",
        "| seed | " + " | ".join(names) + " |",
        "|---:|" + "---:|" * len(names),
    ]
    spreads, thetas = [], []
    for s in seeds:
        d = args.work / f"seed_{s}"
        est, truth = np.load(d / "affinity.npy"), np.load(d / "ground_truth" / "affinity.npy")
        cells = [f"{block_mean(est, blocks[a], blocks[b]):.2f} / {block_mean(truth, blocks[a], blocks[b]):.2f}" for a, b in pairs]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
        spreads.append(read_json(d / "signal.json")["spread"])
        thetas.append([t["meta"] for t in read_json(d / "results.json")["tasks"]])
    n = len(thetas[0])
    lines += ["", "Per task: θ*'s score (min–max over seeds) and the standard deviation of its estimated scores over "
              "subsets (`signal.json`'s spread, min–max over seeds):", "", "| task | θ* | spread of f(S, i) |", "|---:|---:|---:|"]
    for i in range(n):
        th = [t[i] for t in thetas]
        sp = [x[i] for x in spreads]
        lines.append(f"| {i} | {min(th):.1f}–{max(th):.1f} | {min(sp):.2f}–{max(sp):.2f} |")
    text = "\n".join(lines) + "\n"
    if args.out:
        write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
