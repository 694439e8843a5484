"""A crash after any file write of any stage resumes to the same artifacts (issue #10).

Every artifact becomes visible through ``os.replace`` (``policygradex.io.atomic_path``). The test
counts those renames in an uninterrupted run, then, for each k, runs again and crashes the process
right after the k-th rename (a ``BaseException``, which no handler in the library swallows, as a kill
would not be), reruns, and compares every artifact with the uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from policygradex import pipeline, tasks
from policygradex.config import EstimateConfig, FeatureConfig, GroupConfig, MetaConfig, RunConfig
from policygradex.report import TIMINGS_HEADING

# planted-toy at the smallest budgets that still run every stage (seconds per run)
CFG = RunConfig(
    preset="smoke", seed=5,
    meta=MetaConfig(total_steps=6144, depth=2, width=16),
    features=FeatureConfig(samples_per_task=64, d=32, envs_per_task=2),
    estimate=EstimateConfig(score="rollout", num_subsets=8, episodes=2, chunk=3),  # chunked scoring: more files to crash after
    groups=GroupConfig(total_steps=2048, eval_episodes=2),
)
TIMING = {"seconds", "wall_seconds", "compute_seconds", "train/env_steps_per_s"}


class Crash(BaseException):
    """Stands in for a kill right after a file became visible."""


def _count_renames(monkeypatch, crash_after: int | None) -> list[int]:
    real = os.replace
    count = [0]

    def replace(src, dst):  # type: ignore[no-untyped-def]
        real(src, dst)
        count[0] += 1
        if crash_after is not None and count[0] == crash_after:
            raise Crash(dst)

    monkeypatch.setattr(os, "replace", replace)
    return count


def _strip(o):  # type: ignore[no-untyped-def]
    if isinstance(o, dict):
        return {k: _strip(v) for k, v in o.items() if k not in TIMING}
    if isinstance(o, list):
        return [_strip(v) for v in o]
    return o


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(
            _same(a[k], b[k]) for k in a if k not in ("meta", *TIMING)  # e.g. meta/tag.pt's seconds
        ) and _strip(a.get("meta")) == _strip(b.get("meta"))
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    return a == b


def _artifacts(root: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if not p.is_file() or "tb" in p.parts or p.suffix == ".png":
            continue
        if p.name == "timings.json":  # wall-clocks, of the stages that ran in the last process
            out[rel] = None
        elif p.suffix == ".json":
            out[rel] = _strip(json.loads(p.read_text()))
        elif p.suffix == ".jsonl":
            out[rel] = [_strip(json.loads(line)) for line in p.read_text().splitlines()]
        elif p.suffix == ".npy":
            out[rel] = np.load(p).tolist()
        elif p.suffix == ".pt":
            out[rel] = torch.load(p, weights_only=True)
        elif p.name in ("report.md", "report.html"):  # everything up to the wall-clocks of its last section
            head, *timings = re.split(rf"<h2>{TIMINGS_HEADING}</h2>|## {TIMINGS_HEADING}\n", p.read_text())
            assert len(timings) == 1, f"{rel} has no single {TIMINGS_HEADING} section"
            out[rel] = head
        else:
            out[rel] = p.read_bytes()
    return out


def _assert_same_run(reference: dict[str, object], d: Path, k: int) -> None:
    got = _artifacts(d)
    assert got.keys() == reference.keys(), f"crash after write {k}: files differ: {got.keys() ^ reference.keys()}"
    for rel in reference:
        assert _same(reference[rel], got[rel]), f"crash after write {k}: {rel} differs"
    assert not [p for p in d.rglob("*.tmp")], f"crash after write {k}: temporary files left"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("reference") / "run"
    mp = pytest.MonkeyPatch()
    count = _count_renames(mp, None)
    try:
        pipeline.run(tasks.make("planted-toy"), CFG, d)
    finally:
        mp.undo()
    return _artifacts(d), count[0]


def _crash_and_resume(k: int, reference, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    artifacts, total = reference
    d = tmp_path / f"crash-{k}"
    _count_renames(monkeypatch, k)
    with pytest.raises(Crash):
        pipeline.run(tasks.make("planted-toy"), CFG, d)
    monkeypatch.undo()
    pipeline.run(tasks.make("planted-toy"), CFG, d)
    _assert_same_run(artifacts, d, k)


def test_reference_run_has_writes_in_every_stage(reference):
    artifacts, total = reference
    assert total >= 25
    for rel in ("config.json", "meta/policy.pt", "features/projection.json", "subsets.json", "estimate/fit.json",
                "scores.jsonl", "affinity.npy", "groups.json", "groups/0/eval.json", "results.json", "report.md"):
        assert rel in artifacts


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8, 13, 21])
def test_crash_after_a_write_resumes_to_the_same_artifacts(k, reference, tmp_path, monkeypatch):
    _crash_and_resume(k, reference, tmp_path, monkeypatch)


@pytest.mark.slow
def test_crash_after_every_write_resumes_to_the_same_artifacts(reference, tmp_path, monkeypatch):
    for k in range(1, reference[1] + 1):
        _crash_and_resume(k, reference, tmp_path, monkeypatch)
