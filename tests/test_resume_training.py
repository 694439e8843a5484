"""Training killed mid-run (SIGKILL) resumes from its saved state and ends with the same weights as an
uninterrupted run: the meta-policy through `policygradex run`, a group policy through `train-groups`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from policygradex import pipeline, tasks
from policygradex.config import MetaConfig, RunConfig

# meta budgets of about 15 PPO iterations (planted-toy: 3072 steps each; cartpole-10: 5120)
META_STEPS = {"planted-toy": 46_080, "cartpole-10": 76_800}


def _kill_when(args: list[str], marker: Path, timeout: float = 120.0) -> None:
    """Run the CLI with a training state saved after every iteration; SIGKILL it once ``marker`` exists."""
    env = {**os.environ, "POLICYGRADEX_STATE_EVERY_S": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "policygradex.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while not marker.exists():
            assert proc.poll() is None, f"the command ended (status {proc.returncode}) before {marker} appeared"
            assert time.monotonic() < deadline, f"{marker} did not appear within {timeout} s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def _assert_same_weights(a: Path, b: Path) -> None:
    sa, sb = _state_dict(a), _state_dict(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("name", ["planted-toy", "cartpole-10"])
def test_killed_meta_training_resumes_to_the_same_weights(name, tmp_path):
    family = tasks.make(name)
    cfg = RunConfig(preset="smoke", seed=3, meta=MetaConfig(total_steps=META_STEPS[name]))
    pipeline.run(family, cfg, tmp_path / "full", stop_after="meta")

    killed = tmp_path / "killed"
    _kill_when(["run", "--family", name, "--out", str(killed), "--preset", "smoke", "--seed", "3",
                "--meta.total-steps", str(META_STEPS[name]), "--stop-after", "meta"],
               killed / "meta" / "train_state.pt")
    assert not (killed / "meta" / "policy.pt").exists(), "the kill came too late to interrupt training"
    seen: list[int] = []
    pipeline.run(family, cfg, killed, stop_after="meta", progress=lambda stage, done, total: seen.append(done))
    assert seen[0] > 1, "the rerun started from the first iteration instead of the saved state"
    _assert_same_weights(tmp_path / "full" / "meta" / "policy.pt", killed / "meta" / "policy.pt")
    assert not (killed / "meta" / "train_state.pt").exists()  # removed once training is done
    # the TAG lookahead (default: every 10th update, here 2 of them) continued from the state's running sum
    tag_full, tag_killed = (torch.load(d / "meta" / "tag.pt", weights_only=True) for d in (tmp_path / "full", killed))
    assert tag_killed["lookaheads"] == tag_full["lookaheads"] == 2
    assert torch.equal(tag_killed["count"], tag_full["count"]) and torch.equal(tag_killed["mean"].nan_to_num(), tag_full["mean"].nan_to_num())
    # the metrics log is that of one uninterrupted training
    steps = [line.split(",")[0] for line in (killed / "meta" / "metrics.jsonl").read_text().splitlines()]
    full = [line.split(",")[0] for line in (tmp_path / "full" / "meta" / "metrics.jsonl").read_text().splitlines()]
    assert steps == full


def test_killed_group_training_resumes_to_the_same_weights(tmp_path):
    family = tasks.make("planted-toy")
    cfg = RunConfig(preset="smoke", seed=1)
    base = tmp_path / "full"
    pipeline.run(family, cfg, base, stop_after="cluster")
    killed = tmp_path / "killed"
    shutil.copytree(base, killed)
    pipeline.run(family, cfg, base, stop_after="groups")

    _kill_when(["train-groups", "--run", str(killed)], killed / "groups" / "1" / "train_state.pt")
    assert (killed / "groups" / "0" / "policy.pt").exists() and not (killed / "groups" / "1" / "policy.pt").exists()
    stamp = (killed / "groups" / "0" / "policy.pt").stat().st_mtime_ns
    pipeline.run(family, cfg, killed, stop_after="groups")
    assert (killed / "groups" / "0" / "policy.pt").stat().st_mtime_ns == stamp  # finished group reused
    for g in range(3):
        _assert_same_weights(base / "groups" / str(g) / "policy.pt", killed / "groups" / str(g) / "policy.pt")


def test_an_unreadable_training_state_restarts_training(tmp_path):
    """A corrupt state costs time, never a wrong result: training starts over and ends the same."""
    family = tasks.make("planted-toy")
    cfg = RunConfig(preset="smoke", seed=2)
    pipeline.run(family, cfg, tmp_path / "full", stop_after="meta")
    run = pipeline.open_run(family, cfg, tmp_path / "corrupt")
    run.store.meta_dir.mkdir()
    (run.store.meta_dir / "train_state.pt").write_bytes(b"not a state")
    seen: list[int] = []
    pipeline.run(family, cfg, run.dir, stop_after="meta", progress=lambda stage, done, total: seen.append(done))
    assert seen[0] == 1
    _assert_same_weights(tmp_path / "full" / "meta" / "policy.pt", run.store.meta_checkpoint)
