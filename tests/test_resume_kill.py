"""Resume after real kills of the `policygradex run` process (issue 17, item 3).

The run is a subprocess, killed with SIGKILL (no cleanup code runs) or interrupted with SIGINT (Ctrl-C)
at a chosen point: as soon as the first scored chunk of the estimate stage lands on disk. The rerun
must give the same artifacts as an uninterrupted run, and must reuse finished work rather than redo it:
files of finished stages and chunks keep their inode and modification time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

RUN = [
    "run", "--family", "planted-toy", "--preset", "smoke", "--seed", "3",
    # rollout scores (not the default): the scoring that runs in checkpointed chunks, where a kill can land
    "--meta.total-steps", "8192", "--estimate.score", "rollout", "--estimate.chunk", "1", "--estimate.episodes", "8",
    "--groups.total-steps", "2048", "--groups.eval-episodes", "4",
]
# Rewritten by every `run`, on purpose: the report is regenerated from the finished artifacts.
REPORT_FILES = {"results.json", "report.md", "figures/affinity.png"}


def _cli(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "policygradex.cli", *RUN, "--out", str(out), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def _finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _wait_for_first_chunk(proc: subprocess.Popen, out: Path, timeout: float = 300) -> None:
    chunks = out / "estimate" / "chunks"
    deadline = time.monotonic() + timeout
    while not list(chunks.glob("chunk_*.json")):
        assert proc.poll() is None, f"the run ended before its first chunk: {proc.communicate()}"
        assert time.monotonic() < deadline, "no chunk appeared in time"
        time.sleep(0.01)


def _stamps(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``directory``: (inode, mtime in ns)."""
    return {
        str(p.relative_to(directory)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in directory.rglob("*")
        if p.is_file()
    }


def _temporaries(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*.tmp"))


def _chunk_rows(directory: Path) -> dict[str, list]:
    return {p.name: json.loads(p.read_text())["rows"] for p in sorted((directory / "estimate" / "chunks").glob("chunk_*.json"))}


def _assert_same_artifacts(a: Path, b: Path) -> None:
    """Everything a run computes is equal (timings excepted: chunk "seconds", "wall_seconds", fit.json,
    TensorBoard events)."""
    for name in ("subsets.json", "scores.jsonl", "groups.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for name in ["meta/eval.json", *(str(p.relative_to(a)) for p in a.glob("groups/*/eval.json"))]:
        ea, eb = json.loads((a / name).read_text()), json.loads((b / name).read_text())
        assert ea.pop("wall_seconds") >= 0 and eb.pop("wall_seconds") >= 0 and ea == eb, name
    for name in ("affinity.npy", "affinity_task.npy", "affinity_aggregate.npy", "coverage.npy"):
        np.testing.assert_array_equal(np.load(a / name), np.load(b / name), err_msg=name)
    assert _chunk_rows(a) == _chunk_rows(b)
    ra, rb = json.loads((a / "results.json").read_text()), json.loads((b / "results.json").read_text())
    assert ra["groups"] == rb["groups"] and ra["tasks"] == rb["tasks"]
    assert torch.equal(torch.load(a / "estimate" / "weights.pt"), torch.load(b / "estimate" / "weights.pt"))
    for f in sorted((a / "features").glob("task_*.pt")):
        x, y = torch.load(f, weights_only=True), torch.load(b / "features" / f.name, weights_only=True)
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), f.name
    policies = sorted(p.relative_to(a) for p in a.rglob("policy.pt"))
    assert policies == sorted(p.relative_to(b) for p in b.rglob("policy.pt")) and len(policies) == 4
    for rel in policies:
        x = torch.load(a / rel, weights_only=True)["state_dict"]
        y = torch.load(b / rel, weights_only=True)["state_dict"]
        assert all(torch.equal(x[k], y[k]) for k in x), rel


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "full"
    code, _, err = _finish(_cli(out))
    assert code == 0, err
    assert len(list((out / "estimate" / "chunks").glob("chunk_*.json"))) >= 6
    return out


@pytest.mark.slow
def test_sigkill_mid_estimate_resumes_reusing_finished_work(tmp_path, uninterrupted) -> None:
    out = tmp_path / "killed"
    proc = _cli(out)
    _wait_for_first_chunk(proc, out)
    os.kill(proc.pid, signal.SIGKILL)
    code, _, _ = _finish(proc)
    assert code == -signal.SIGKILL
    total = len(list((uninterrupted / "estimate" / "chunks").glob("chunk_*.json")))
    finished = sorted((out / "estimate" / "chunks").glob("chunk_*.json"))
    assert 1 <= len(finished) < total  # killed in the middle of the stage
    assert not (out / "scores.jsonl").exists()
    for f in finished:  # what exists under its real name is complete
        assert json.loads(f.read_text())["rows"]
    before = _stamps(out)
    assert "meta/policy.pt" in before and "estimate/weights.pt" in before

    code, _, err = _finish(_cli(out))
    assert code == 0, err
    after = _stamps(out)
    # Finished work is reused, not recomputed: the files of the finished stages and chunks are untouched
    # (timings.json is the wall-clock record of the last command, rewritten by every run by design).
    for rel, stamp in before.items():
        if not rel.endswith(".tmp") and rel != "timings.json":
            assert after[rel] == stamp, f"{rel} was rewritten by the rerun"
    new_chunks = {rel for rel in after if rel.startswith("estimate/chunks/chunk_") and rel not in before}
    assert len(new_chunks) == total - len(finished)
    _assert_same_artifacts(uninterrupted, out)
    # A SIGKILL can leave at most the temporary file that was being written; the rerun leaves no new one.
    leftover = _temporaries(out)
    assert len(leftover) <= 1 and set(leftover) <= set(before), leftover

    # Rerunning the finished run recomputes nothing; only the report is written again.
    code, _, err = _finish(_cli(out))
    assert code == 0, err
    again = _stamps(out)
    assert {rel: s for rel, s in again.items() if rel not in REPORT_FILES} == {
        rel: s for rel, s in after.items() if rel not in REPORT_FILES
    }


def test_ctrl_c_exits_130_without_temporary_files_and_resumes(tmp_path) -> None:
    """Ctrl-C mid-estimate: exit status 130, one line saying how to resume, no temporary file; the rerun
    keeps the chunks finished before the interrupt. (Up to the estimate only, to stay in the default tier;
    the SIGKILL test above compares a whole resumed run with an uninterrupted one.)"""
    out = tmp_path / "interrupted"
    proc = _cli(out, "--stop-after", "estimate")
    _wait_for_first_chunk(proc, out)
    proc.send_signal(signal.SIGINT)
    code, _, err = _finish(proc)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "interrupted; rerun the same command to resume"
    assert "Traceback" not in err
    assert _temporaries(out) == []
    assert not (out / "scores.jsonl").exists()
    finished = {rel: s for rel, s in _stamps(out).items() if rel.startswith("estimate/chunks/")}
    assert finished and all(json.loads((out / rel).read_text())["rows"] for rel in finished)
    code, stdout, err = _finish(_cli(out, "--stop-after", "estimate"))
    assert code == 0, err
    assert "stopped after stage 'estimate'" in stdout
    assert _temporaries(out) == []
    after = _stamps(out)
    assert {rel: after[rel] for rel in finished} == finished  # reused, not rescored
    chunks = [rel for rel in after if rel.startswith("estimate/chunks/chunk_")]
    assert len(chunks) > len(finished)
    scored = {(r["subset"], r["task"]) for r in map(json.loads, (out / "scores.jsonl").read_text().splitlines())}
    subsets = json.loads((out / "subsets.json").read_text())
    assert len(scored) == sum(len(s["tasks"]) for s in subsets["subsets"])
