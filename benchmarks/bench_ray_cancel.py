"""How often closing a Ray map early leaves an item running: one ``ray.cancel`` per item (what the executor
did before 2026-11-27) against :func:`policygradex.execute._cancel` (cancel again until every item has ended).
Writes ``benchmarks/results/ray_cancel.md``.

    .venv/bin/python benchmarks/bench_ray_cancel.py --runs 25      # about 2 minutes, a local Ray of 2 CPUs

Each run maps 5 items over a local Ray of 2 CPUs; item 0 returns at once, items 1-4 sleep 1 s and then write
a file. The caller takes item 0 and closes the iterator (what Ctrl-C does), waits 1.6 s and counts the files:
a file is an item that outlived its cancellation. The two ways alternate run by run in one Ray.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

from policygradex import execute
from policygradex.io import write_text


def _mark(item: int, folder: str) -> int:
    if item:
        time.sleep(1.0)
        Path(folder, str(item)).write_text("done")
    return item


def _cancel_once(ray, refs) -> None:
    for ref in refs:
        ray.cancel(ref, force=True)


def one_run(way: str) -> int:
    folder = tempfile.mkdtemp()
    saved = execute._cancel
    if way == "once":
        execute._cancel = _cancel_once
    try:
        results = execute.RayExecutor(2).map(_mark, [0, 1, 2, 3, 4], folder)
        next(results)
        results.close()
    finally:
        execute._cancel = saved
    time.sleep(1.6)
    return len(list(Path(folder).iterdir()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ray_cancel.md")
    ap.add_argument("--note", default="nothing else heavy ran beside it")
    args = ap.parse_args()
    left = {"once": [], "until ended": []}
    start = time.time()
    for _ in range(args.runs):
        for way in left:
            left[way].append(one_run(way))
    wall = time.time() - start
    rows = [
        f"| {way} | {sum(n > 0 for n in v)} / {len(v)} | {sum(v)} |" for way, v in left.items()
    ]
    write_text(args.out, "\n".join([
        "# Closing a Ray map early: items left running",
        "",
        f"`.venv/bin/python benchmarks/bench_ray_cancel.py --runs {args.runs}` on {platform.node() or 'this machine'}"
        f" ({platform.processor() or platform.machine()}), a local Ray of 2 CPUs; {wall:.0f} s in all; {args.note}.",
        "",
        "Each run: 5 items, item 0 returns at once and items 1-4 sleep 1 s then write a file; the caller takes item 0",
        "and closes the iterator. A file 1.6 s later is an item that outlived its cancellation (ray-project/ray#24359:",
        "a cancel that reaches a worker as it picks the task up is lost).",
        "",
        "| cancellation | runs with an item left running | items left running |",
        "|---|---:|---:|",
        *rows,
        "",
    ]))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
