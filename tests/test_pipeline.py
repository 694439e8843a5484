import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from policygradex import pipeline, tasks
from policygradex.cli import main
from policygradex.errors import PolicyGradExError

ARTIFACTS = ("subsets.json", "scores.jsonl", "affinity.npy", "coverage.npy", "groups.json", "results.json")


def _same_artifacts(a, b):
    for name in ARTIFACTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for f in sorted((a / "features").glob("task_*.pt")):
        x, y = torch.load(f, weights_only=True), torch.load(b / "features" / f.name, weights_only=True)
        assert all(torch.equal(x[k], y[k]) for k in x), f.name
    for g in sorted((a / "groups").iterdir()):
        x = torch.load(g / "policy.pt", weights_only=True)["state_dict"]
        y = torch.load(b / "groups" / g.name / "policy.pt", weights_only=True)["state_dict"]
        assert all(torch.equal(x[k], y[k]) for k in x), g.name


def _canonical(groups):
    return sorted(sorted(g) for g in groups)


def test_smoke_run_recovers_planted_groups_and_writes_everything(tmp_path):
    family = tasks.make("planted-toy")
    res = pipeline.run(family, pipeline.RunConfig(preset="smoke", seed=0), tmp_path / "run")
    assert _canonical(res.groups) == _canonical(family.planted_groups)
    d = tmp_path / "run"
    for name in (*ARTIFACTS, "config.json", "meta/policy.pt", "report.md", "figures/affinity.png", "affinity_task.npy"):
        assert (d / name).exists(), name
    U, cov = np.load(d / "affinity.npy"), np.load(d / "coverage.npy")
    assert U.shape == cov.shape == (6, 6) and np.isfinite(U).all()
    assert cov[~np.eye(6, dtype=bool)].min() >= 3
    report = (d / "report.md").read_text()
    assert "recovered exactly" in report and "| **mean** |" in report
    results = json.loads((d / "results.json").read_text())
    assert len(results["tasks"]) == 6 and results["score_mode"] == "surrogate"  # the default score
    groups = json.loads((d / "groups.json").read_text())
    assert groups["k"] == 3 and groups["method"] == "sdp"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_planted_groups_recovered_across_seeds(tmp_path, seed):
    family = tasks.make("planted-toy")
    res = pipeline.run(family, pipeline.RunConfig(preset="smoke", seed=seed), tmp_path / "run")
    assert _canonical(res.groups) == _canonical(family.planted_groups)


def test_rollout_mode_recovers_planted_groups(tmp_path):
    family = tasks.make("planted-toy")
    cfg = pipeline.RunConfig(preset="smoke", estimate=pipeline.EstimateConfig(score="rollout"))
    res = pipeline.run(family, cfg, tmp_path / "run", stop_after="cluster")
    groups = json.loads((tmp_path / "run" / "groups.json").read_text())["groups"]
    assert res.groups == groups and _canonical(groups) == _canonical(family.planted_groups)
    assert res.stages[-1] == "cluster" and res.group_scores is None
    assert '"mode": "rollout"' in (tmp_path / "run" / "scores.jsonl").read_text()


def test_interrupted_run_resumes_to_identical_artifacts(tmp_path):
    family = tasks.make("planted-toy")
    # rollout scores: the stage that runs in chunks through the executor and checkpoints each one
    cfg = pipeline.RunConfig(preset="smoke", seed=4, estimate=pipeline.EstimateConfig(score="rollout", chunk=2))
    pipeline.run(family, cfg, tmp_path / "full")

    calls = {"n": 0}

    def kill_midway(stage, done, total):
        if stage == "estimate" and done >= 2:
            calls["n"] += 1
            raise KeyboardInterrupt  # as if the process were killed after two chunks

    with pytest.raises(KeyboardInterrupt):
        pipeline.run(family, cfg, tmp_path / "resumed", progress=kill_midway)
    chunks = list((tmp_path / "resumed" / "estimate" / "chunks").glob("chunk_*.json"))
    assert 2 <= len(chunks) and not (tmp_path / "resumed" / "scores.jsonl").exists()
    assert not list((tmp_path / "resumed").rglob("*.tmp"))
    pipeline.run(family, cfg, tmp_path / "resumed")
    _same_artifacts(tmp_path / "full", tmp_path / "resumed")


def test_process_executor_gives_the_same_artifacts(tmp_path):
    family = tasks.make("planted-toy")
    base = dict(preset="smoke", seed=5)
    pipeline.run(family, pipeline.RunConfig(**base), tmp_path / "serial")
    pipeline.run(family, pipeline.RunConfig(**base, executor="process", workers=2), tmp_path / "proc")
    _same_artifacts(tmp_path / "serial", tmp_path / "proc")


def test_stage_subcommands_on_one_run_directory(tmp_path, capsys):
    d = tmp_path / "run"
    base = ["--family", "planted-toy", "--preset", "smoke", "--out", str(d)]
    assert main(["run", *base, "--stop-after", "meta"]) == 0
    assert main(["cluster", "--run", str(d)]) == 2  # affinity missing: one clear error
    assert "affinity.npy is missing" in capsys.readouterr().err
    for stage in ("features", "estimate", "cluster", "train-groups", "report"):
        assert main([stage, "--run", str(d)]) == 0, stage
    out = capsys.readouterr().out
    assert "groups: [[0, 3], [1, 4], [2, 5]]" in out
    assert (d / "report.md").exists()
    # rerunning the whole run on the same directory only reports
    assert main(["run", *base]) == 0


def test_run_bad_input(tmp_path):
    family = tasks.make("planted-toy")
    with pytest.raises(PolicyGradExError, match="k=7 is larger"):
        pipeline.run(family, pipeline.RunConfig(k=7, preset="smoke"), tmp_path / "a")
    assert not (tmp_path / "a").exists()
    with pytest.raises(PolicyGradExError, match="holds no run"):
        pipeline.reopen(tmp_path)
    p = subprocess.run(
        [sys.executable, "-m", "policygradex.cli", "run", "--family", "planted-toy", "--estimate.l2", "-1", "--out", str(tmp_path / "b")],
        capture_output=True, text=True,
    )
    assert p.returncode == 2 and p.stderr.strip() == "error: l2=-1.0 must be positive"
    assert not (tmp_path / "b").exists()


def test_an_unregistered_family_object_runs_end_to_end_with_the_serial_executor(tmp_path):
    """The serial path uses the family object it was given; nothing rebuilds it by name (issue #10)."""
    family = tasks.from_gymnasium(
        "CartPole-v1", params=[{"length": 0.5}, {"length": 1.0}, {"length": 0.5}, {"length": 1.0}],
        name="unregistered-cartpole-test", set_attributes=True, train_steps={"smoke": 2048},
    )
    assert "unregistered-cartpole-test" not in tasks.names()
    cfg = pipeline.RunConfig(
        k=2, preset="smoke",
        features=pipeline.FeatureConfig(samples_per_task=32, d=16, envs_per_task=1),
        estimate=pipeline.EstimateConfig(episodes=1),
        groups=pipeline.GroupConfig(total_steps=2048, eval_episodes=1),
    )
    res = pipeline.run(family, cfg, tmp_path / "run")
    assert res.groups is not None and sorted(i for g in res.groups for i in g) == [0, 1, 2, 3]
    assert res.group_scores is not None and set(res.group_scores) == {0, 1, 2, 3}
