import json

import numpy as np
import pytest
import torch

from policygradex import pipeline, studies, tasks
from policygradex.analysis.agreement import nmi, random_nmi
from policygradex.analysis.approx import approximation_errors, relative_error
from policygradex.errors import ConfigError
from policygradex.gradex.features import flatten, per_sample_grads, unflatten
from policygradex.grouping.baselines import gradient_similarity, random_partition
from policygradex.rl.policy import PolicyConfig, build_policy, log_prob


def test_nmi_identical_permuted_and_random():
    a = [[0, 3], [1, 4], [2, 5]]
    assert nmi(a, a, 6) == pytest.approx(1.0)
    assert nmi(a, [[2, 5], [0, 3], [4, 1]], 6) == pytest.approx(1.0)  # relabelled groups
    assert nmi(a, [[0, 1, 2], [3, 4, 5]], 6) < 0.2
    assert 0.0 < random_nmi(a, 6, 3, seeds=50) < 0.8


def test_random_partition_is_valid_and_seeded():
    p = random_partition(10, 3, seed=1)
    assert sorted(i for g in p for i in g) == list(range(10)) and len(p) == 3 and min(map(len, p)) >= 1
    assert p == random_partition(10, 3, seed=1)
    assert sorted(map(len, random_partition(6, 2, seed=0, sizes=[4, 2]))) == [2, 4]


def test_gradient_similarity_is_cosine():
    g = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    S = gradient_similarity(g)
    assert np.allclose(S, [[1, 1, 0], [1, 1, 0], [0, 0, 1]])


def test_first_order_error_of_a_linear_model_is_zero():
    torch.manual_seed(0)
    X = torch.randn(50, 8, dtype=torch.float64)
    theta = torch.randn(8, dtype=torch.float64)
    u = torch.randn(3, 8, dtype=torch.float64)
    u = u / u.norm(dim=1, keepdim=True)
    res = approximation_errors(lambda th: X @ th, theta, X @ theta, (X @ u.T).T, u, [0.001, 0.05, 1.0])
    for r in res:
        assert r.first_order == pytest.approx(0.0, abs=1e-12)
        assert r.zeroth_order > 0


def test_first_order_error_grows_with_distance_on_a_real_policy():
    pol = build_policy(6, 3, True, PolicyConfig(depth=4, width=32), seed=0)
    params = pol.actor_params()
    theta = flatten(params)
    obs, actions = torch.randn(200, 6), torch.randint(0, 3, (200,))
    G = torch.cat(list(per_sample_grads(pol.actor, params, obs, actions)))
    u = torch.randn(4, theta.numel())
    u = u / u.norm(dim=1, keepdim=True)

    def logp_at(th):
        with torch.no_grad():
            return log_prob(pol.actor, unflatten(th, params), obs, actions)

    res = approximation_errors(logp_at, theta, logp_at(theta), (G @ u.T).T, u, [0.001, 0.01, 0.1, 0.5])
    first = [r.first_order for r in res]
    assert all(a < b for a, b in zip(first, first[1:], strict=False)), first
    assert first[0] < 0.01 * res[0].zeroth_order + 1e-6  # far better than zeroth order close to θ*
    assert relative_error(torch.ones(3), torch.ones(3)) == 0.0


def test_ground_truth_resumes_without_redoing_finished_subsets(tmp_path):
    family = tasks.make("planted-toy")
    d = tmp_path / "run"
    pipeline.run(family, pipeline.RunConfig(preset="smoke", seed=2), d, stop_after="cluster")
    run = pipeline.reopen(d)
    gt = studies.ground_truth(run, total_steps=1024)
    files = sorted((d / "ground_truth" / "subsets").glob("subset_*.json"))
    assert len(files) == gt["distinct_subsets"] == len(set(run.store.load_subsets()))
    stamps = {f.name: f.stat().st_mtime_ns for f in files}
    before = (d / "ground_truth" / "scores.jsonl").read_bytes()
    files[1].unlink()  # as if the run had been killed before this subset finished
    calls = []
    studies.ground_truth(run, total_steps=1024, progress=lambda stage, done, total: calls.append(done))
    assert calls[0] == len(files) - 1  # only one subset left to do
    for f in files:
        if f != files[1]:
            assert f.stat().st_mtime_ns == stamps[f.name], f.name
    assert (d / "ground_truth" / "scores.jsonl").read_bytes() == before
    ag = studies.agreement(run)
    assert ag["pairs"] == sum(len(s) for s in set(run.store.load_subsets()))
    assert 0.0 <= ag["nmi"] <= 1.0 and ag["speedup"] > 1.0
    assert json.loads((d / "agreement.json").read_text())["true_groups"] == ag["true_groups"]
    # another ground-truth budget in the same run directory is refused
    with pytest.raises(Exception, match="holds another run"):
        studies.ground_truth(run, total_steps=2048)


@pytest.mark.slow
def test_compare_groupings_trains_every_baseline_with_the_same_budget(tmp_path):
    family = tasks.make("planted-toy")
    d = tmp_path / "run"
    pipeline.run(family, pipeline.RunConfig(preset="smoke", seed=0), d)
    run = pipeline.reopen(d)
    estimated_policy = d / "groups" / "0" / "policy.pt"
    stamp = estimated_policy.stat().st_mtime_ns
    cg = studies.compare_groupings(run, seeds=1)
    parts = cg["partitions"]
    assert set(parts) == {"estimated", "gradient-similarity", "tag", "one-group", "single-task", "random-0"}
    assert parts["single-task"]["groups"] == [[i] for i in range(family.n)]
    assert parts["one-group"]["groups"] == [list(range(family.n))]
    assert len(parts["random-0"]["groups"]) == 3
    for name, r in parts.items():
        assert sorted(i for g in r["groups"] for i in g) == list(range(family.n)), name
        assert sorted(int(i) for i in r["per_task"]) == list(range(family.n)), name
        assert r["mean"] == pytest.approx(np.mean(list(r["per_task"].values())))
    # the estimated grouping's policies are those of the run (reused, not retrained)
    assert estimated_policy.stat().st_mtime_ns == stamp
    res = json.loads((d / "results.json").read_text())
    assert parts["estimated"]["mean"] == pytest.approx(res["mean_group_policy"])
    # every grouping costs the same env steps in all (the meta budget, split by group size)
    def trained_steps(base, groups):
        return sum(json.loads((base / str(g) / "metrics.jsonl").read_text().splitlines()[-1])["step"] for g in range(len(groups)))

    budget = trained_steps(d / "groups", parts["estimated"]["groups"])
    assert abs(budget - run.config.meta.ppo.total_steps) < run.config.meta.ppo.batch_size(1)
    for name in ("gradient-similarity", "tag", "one-group", "single-task", "random-0"):
        assert trained_steps(d / "baselines" / name, parts[name]["groups"]) == budget, name
    assert json.loads((d / "groupings.json").read_text())["partitions"].keys() == parts.keys()


def test_compare_groupings_needs_a_random_seed(tmp_path):
    family = tasks.make("planted-toy")
    d = tmp_path / "run"
    pipeline.run(family, pipeline.RunConfig(preset="smoke", seed=0), d, stop_after="subsets")
    with pytest.raises(ConfigError, match="random_seeds=0"):
        studies.compare_groupings(pipeline.reopen(d), seeds=0)
