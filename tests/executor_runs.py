"""Runs shared by the executor tests (issue 15): the same run on every executor, and what must match."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from policygradex import pipeline, studies, tasks

# Compared byte for byte: they hold no timing.
RUN_ARTIFACTS = ("subsets.json", "scores.jsonl", "affinity.npy", "coverage.npy", "groups.json", "results.json")
TRUTH_ARTIFACTS = ("scores.jsonl", "affinity.npy", "coverage.npy")


def custom_family() -> tasks.TaskFamily:
    """A family in no registry: CartPole with its gravity and push force changed per task (issue 15,
    item 2). Built by the caller, so a worker can only get it by value."""
    return tasks.from_gymnasium(
        "CartPole-v1",
        params=[{"gravity": 9.8, "force_mag": 10.0}, {"gravity": 9.8, "force_mag": 5.0},
                {"gravity": 15.0, "force_mag": 10.0}, {"gravity": 15.0, "force_mag": 5.0}],
        name="test-cartpole-gravity-force", set_attributes=True, train_steps={"smoke": 2048},
    )


def custom_config(**kw) -> pipeline.RunConfig:
    """Tiny budgets: every stage runs, in seconds."""
    return pipeline.RunConfig(
        k=2, preset="smoke", seed=3,
        features=pipeline.FeatureConfig(samples_per_task=32, d=16, envs_per_task=1),
        estimate=pipeline.EstimateConfig(score="rollout", episodes=2, chunk=2),  # rollout scoring: a parallel stage
        groups=pipeline.GroupConfig(total_steps=2048, eval_episodes=2), **kw,
    )


def cartpole_config(**kw) -> pipeline.RunConfig:
    """cartpole-10 with the smoke preset, fewer evaluation episodes per score (the run is repeated per
    executor)."""
    kw.setdefault("estimate", pipeline.EstimateConfig(score="rollout", episodes=4))  # rollout scoring runs in parallel
    return pipeline.RunConfig(preset="smoke", seed=0, **kw)


def run_with_truth(family: tasks.TaskFamily, cfg: pipeline.RunConfig, out: Path, executor: str | None = None) -> pipeline.Run:
    """The whole pipeline, then the ground truth with one PPO rollout per subset."""
    pipeline.run(family, cfg, out)
    run = pipeline.open_run(family, cfg, out)
    size = max(len(s) for s in run.store.load_subsets())
    studies.ground_truth(run, total_steps=run.config.meta.ppo.batch_size(size), executor=executor)
    return run


def truth_records(d: Path) -> dict[str, dict]:
    """Every fine-tuned subset's record without its wall-clock."""
    out = {}
    for f in sorted((d / "ground_truth" / "subsets").glob("*.json")):
        rec = json.loads(f.read_text())
        rec.pop("seconds")
        out[f.name] = rec
    return out


def assert_same_artifacts(a: Path, b: Path, truth: bool = True) -> None:
    """The run in ``b`` made the same artifacts as the one in ``a``."""
    for name in RUN_ARTIFACTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    groups = sorted(p.name for p in (a / "groups").iterdir())
    assert groups and groups == sorted(p.name for p in (b / "groups").iterdir())
    for g in groups:
        x = torch.load(a / "groups" / g / "policy.pt", weights_only=True)["state_dict"]
        y = torch.load(b / "groups" / g / "policy.pt", weights_only=True)["state_dict"]
        assert all(torch.equal(x[k], y[k]) for k in x), g
    if truth:
        assert_same_truth(a, b)


def assert_same_truth(a: Path, b: Path) -> None:
    for name in TRUTH_ARTIFACTS:
        assert (a / "ground_truth" / name).read_bytes() == (b / "ground_truth" / name).read_bytes(), name
    ga, gb = (json.loads((d / "ground_truth" / "groups.json").read_text()) for d in (a, b))
    assert ga["groups"] == gb["groups"] and ga["env_steps"] == gb["env_steps"]
    ra, rb = truth_records(a), truth_records(b)
    assert ra and ra == rb
