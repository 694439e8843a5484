"""Give a run made before the TAG lookahead existed its `meta/tag.pt` (issue 12: TAG over the seeds of an
existing grouping comparison), by replaying its meta-training with the lookahead observer.

    .venv/bin/python benchmarks/retrofit_tag.py DIR [DIR ...] [--every 10]

The replay uses the run's own resolved settings (family, PPO budget and hyperparameters, architecture, seed).
PPO training is deterministic on CPU and the lookahead draws no random numbers and changes no weight
(`tests/test_tag_hook.py`), so the replayed θ* must equal the run's θ* bit for bit: the script checks that and
writes `meta/tag.pt` only then; otherwise it says so and leaves the run untouched (the θ* was trained by other
code, so a TAG record from the replay would describe another training). A run that already has
`meta/tag.pt` is skipped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from policygradex import pipeline
from policygradex.config import DEFAULT_TAG_EVERY
from policygradex.rl.checkpoint import load_checkpoint
from policygradex.training import TagLookahead, train_into


def retrofit(directory: Path, every: int) -> str:
    run = pipeline.reopen(directory)
    store, meta = run.store, run.config.meta
    if store.has_tag():
        return "already has meta/tag.pt: skipped"
    if meta.sb3_model is not None:
        return "θ* was imported from Stable-Baselines3: no training to replay"
    theirs = load_checkpoint(store.require(store.meta_checkpoint, "meta"), run.family).policy.state_dict()
    tag = TagLookahead(range(run.family.n), every, meta.ppo.clip_coef, meta.ppo.norm_adv)
    with tempfile.TemporaryDirectory() as tmp:
        mine = train_into(
            tmp, run.family, range(run.family.n), meta.ppo, meta.policy, pipeline.stage_seed(run.seed, "meta"),
            run.config.groups.eval_episodes, tensorboard=False, observer=tag,
        ).checkpoint.policy.state_dict()
    same = mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    if not same:
        return "the replayed θ* differs from the run's (other code trained it): left untouched"
    store.save_tag(tag.record())
    return f"wrote {store.tag_path} ({tag.record().lookaheads} lookaheads, every {every} updates; θ* identical)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--every", type=int, default=DEFAULT_TAG_EVERY)
    args = ap.parse_args()
    torch.set_num_threads(1)
    bad = 0
    for d in args.runs:
        msg = retrofit(d, args.every)
        bad += "differs" in msg
        print(f"{d}: {msg}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
