"""Rollout scores f(S, i) (``gradex.scores.score_rollouts``) against direct evaluations (issue 17).

Each expected score is computed here by perturbing θ* by hand (``vector_to_parameters``) and evaluating
the result with the task's own seed; common random numbers mean a task scored with the same Δθ in two
subsets gets the same score. Planted-toy runs in the default tier; Meta-World (success rate) and
highway (slow env) are the families whose rollout scoring had no test.
"""

from __future__ import annotations

import copy
import os
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from policygradex import tasks
from policygradex.gradex.scores import ScoreJob, score_rollouts, task_eval_seed
from policygradex.rl.checkpoint import save_checkpoint
from policygradex.rl.evaluate import evaluate
from policygradex.rl.policy import PolicyConfig, build_policy


def _policy(family, seed: int, sharpen: float = 1.0):
    pol = build_policy(family.obs_dim, family.action_dim, family.discrete, PolicyConfig(depth=2, width=16), seed=seed)
    with torch.no_grad():
        for p in pol.actor.net.parameters():
            p.mul_(sharpen)
    return pol


def _by_hand(policy, delta: np.ndarray):
    """θ* + Δθ over the actor's parameters, in their order (no library helper)."""
    out = copy.deepcopy(policy)
    theta = parameters_to_vector(out.actor.parameters()).detach()
    vector_to_parameters(theta + torch.as_tensor(delta, dtype=theta.dtype), out.actor.parameters())
    return out


def _expected(family, policy, delta, task: int, episodes: int, seed: int, deterministic: bool) -> float:
    res = evaluate(_by_hand(policy, delta), family, [task], episodes, task_eval_seed(seed, task), deterministic)
    return res.score(family.metric)[task]


def _job(path, family, subsets, deltas, episodes, seed, deterministic=False) -> ScoreJob:
    return ScoreJob(checkpoint=str(path), family=family.name, subsets=tuple(subsets),
                    deltas=np.asarray(deltas, dtype=np.float32), episodes=episodes, seed=seed,
                    deterministic=deterministic)


def test_task_eval_seed_depends_only_on_run_seed_and_task() -> None:
    # Part of the definition of a run: changing the derivation changes every published rollout score.
    assert [task_eval_seed(0, i) for i in range(3)] == [task_eval_seed(0, i) for i in range(3)]
    seeds = {task_eval_seed(s, i) for s in range(3) for i in range(10)}
    assert len(seeds) == 30 and all(0 <= x < 2**31 for x in seeds)
    expected = int(np.random.SeedSequence([5, 7919, 2]).generate_state(1)[0] % (2**31))
    assert task_eval_seed(5, 2) == expected


def test_planted_toy_rollout_scores_equal_direct_evaluations(tmp_path) -> None:
    family = tasks.make("planted-toy")
    policy = _policy(family, seed=4, sharpen=5.0)
    path = tmp_path / "policy.pt"
    save_checkpoint(path, policy, family, list(range(family.n)))
    p = parameters_to_vector(policy.actor.parameters()).numel()
    rng = np.random.default_rng(0)
    big = rng.normal(0.0, 0.5, size=p)
    subsets = [(0, (0, 3)), (1, (3, 5)), (4, (3,))]
    deltas = [np.zeros(p), big, np.zeros(p)]
    for deterministic in (False, True):
        start = time.perf_counter()
        res = score_rollouts(_job(path, family, subsets, deltas, episodes=6, seed=11, deterministic=deterministic))
        assert 0 < res["seconds"] <= time.perf_counter() - start  # the job's own compute time
        rows = res["rows"]
        assert [(l, i) for l, i, _ in rows] == [(0, 0), (0, 3), (1, 3), (1, 5), (4, 3)]
        for (l, i, score), delta in zip(rows, [deltas[0], deltas[0], big, big, deltas[2]], strict=True):
            assert score == pytest.approx(_expected(family, policy, delta, i, 6, 11, deterministic)), (l, i)
        # Common random numbers: task 3 with the same Δθ = 0 in subsets 0 and 4 gets the same score.
        assert rows[1][2] == rows[4][2]
    # The perturbation matters: the same task with a large Δθ scores differently on this seed.
    assert rows[1][2] != rows[2][2]


def test_rewritten_checkpoint_is_reloaded(tmp_path) -> None:
    """The checkpoint cache is keyed by the file's version (size and modification time): a new θ* at the
    same path is used, also when only one of the two changes."""
    from policygradex.tasks import make

    family = make("planted-toy")
    path = tmp_path / "policy.pt"
    versions = [(1, 16, 10**9), (2, 16, 2 * 10**9), (3, 8, 2 * 10**9)]  # (seed, width, mtime in ns)
    scores = []
    for seed, width, mtime in versions:
        policy = build_policy(family.obs_dim, family.action_dim, True, PolicyConfig(depth=2, width=width), seed=seed)
        with torch.no_grad():
            for p in policy.actor.net.parameters():
                p.mul_(8.0)
        save_checkpoint(path, policy, family, list(range(family.n)))
        os.utime(path, ns=(mtime, mtime))  # the last version: another size, the same modification time
        n = parameters_to_vector(policy.actor.parameters()).numel()
        job = _job(path, family, [(0, (0, 1, 2))], [np.zeros(n)], episodes=8, seed=3, deterministic=True)
        rows = score_rollouts(job)["rows"]
        assert [s for _, _, s in rows] == pytest.approx(
            [_expected(family, policy, np.zeros(n), i, 8, 3, True) for i in (0, 1, 2)]
        )
        scores.append([s for _, _, s in rows])
    assert scores[0] != scores[1] and scores[1] != scores[2]


class _Coin(gym.Env):
    """One-step episodes: reward 5 for every action, success only for action 0."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(1, dtype=np.float32), 5.0, True, False, {"success": int(action) == 0}


def test_success_metric_families_are_scored_by_success_rate(tmp_path, monkeypatch) -> None:
    if "policygradex-test/Coin-v0" not in gym.registry:
        gym.register(id="policygradex-test/Coin-v0", entry_point=_Coin)
    family = tasks.from_gymnasium("policygradex-test/Coin-v0", params=[{}, {}], name="coin", metric="success")
    monkeypatch.setattr(tasks, "_REGISTRY", dict(tasks._REGISTRY))  # score jobs find families by name
    tasks.register("coin", lambda: family)
    policy = _policy(family, seed=0)
    path = tmp_path / "policy.pt"
    save_checkpoint(path, policy, family, [0, 1])
    p = parameters_to_vector(policy.actor.parameters()).numel()
    rows = score_rollouts(_job(path, family, [(0, (0, 1))], [np.zeros(p)], episodes=16, seed=4))["rows"]
    for _, i, score in rows:
        assert 0.0 < score < 1.0  # a success rate of the sampled policy, not the return (always 5)
        assert score == pytest.approx(_expected(family, policy, np.zeros(p), i, 16, 4, False))


@pytest.mark.parametrize("name", [pytest.param("metaworld-mt10", marks=pytest.mark.slow), "highway-10"])
def test_rollout_scores_on_metaworld_and_highway(tmp_path, name) -> None:
    family = tasks.make(name)
    policy = _policy(family, seed=0)
    path = tmp_path / "policy.pt"
    save_checkpoint(path, policy, family, list(range(family.n)))
    p = parameters_to_vector(policy.actor.parameters()).numel()
    delta = np.random.default_rng(1).normal(0.0, 0.05, size=p)
    subsets = [(0, (0, 1)), (3, (1,))]
    rows = score_rollouts(_job(path, family, subsets, [delta, delta], episodes=1, seed=2))["rows"]
    assert [(l, i) for l, i, _ in rows] == [(0, 0), (0, 1), (3, 1)]
    for _, i, score in rows:
        assert score == pytest.approx(_expected(family, policy, delta, i, 1, 2, False)), i
        if family.metric == "success":  # Meta-World scores are success rates, not returns
            assert score in (0.0, 1.0)
    assert rows[1][2] == rows[2][2]  # common random numbers across subsets
