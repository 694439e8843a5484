"""The grouping-quality machinery of issue #12 end to end on planted-toy: the objective score and the
regression affinity in the pipeline, no-signal flags, truth replicates and the noise ceiling, the
baselines (k = 1, k = n, ground truth), both budget rules, and the comparison over seeds."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from policygradex import pipeline, studies, tasks
from policygradex.cli import main
from policygradex.config import EstimateConfig, FeatureConfig, GroupConfig, MetaConfig, RunConfig, group_ppo


@pytest.fixture(scope="module")
def run_with_truths(tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("quality") / "run"
    pipeline.run(tasks.make("planted-toy"), RunConfig(preset="smoke", seed=2), d, stop_after="cluster")
    run = pipeline.reopen(d)
    studies.ground_truth(run, total_steps=1024)
    studies.ground_truth(run, total_steps=1024, seed=1)
    return d


def test_objective_score_and_regression_affinity_in_the_pipeline(tmp_path):
    family = tasks.make("planted-toy")
    cfg = pipeline.RunConfig(preset="smoke", estimate=pipeline.EstimateConfig(score="objective", affinity="regression"))
    res = pipeline.run(family, cfg, tmp_path / "run", stop_after="cluster")
    assert res.groups is not None and sorted(i for g in res.groups for i in g) == list(range(6))
    lines = (tmp_path / "run" / "scores.jsonl").read_text().splitlines()
    assert all(json.loads(line)["mode"] == "objective" for line in lines)
    U = np.load(tmp_path / "run" / "affinity.npy")
    assert np.array_equal(U, np.load(tmp_path / "run" / "affinity_regression.npy"))
    assert np.allclose(U, U.T) and np.all(np.diag(U) == 0)
    signal = json.loads((tmp_path / "run" / "signal.json").read_text())
    assert signal["no_signal"] == []  # every planted-toy task's objective changes with the subset
    assert len(signal["spread"]) == 6 and min(signal["spread"]) > 0


def test_truth_replicate_uses_other_seeds_and_the_noise_ceiling_compares_them(run_with_truths):
    d = run_with_truths
    a = json.loads((d / "ground_truth" / "groups.json").read_text())
    b = json.loads((d / "ground_truth_seed1" / "groups.json").read_text())
    assert a["distinct_subsets"] == b["distinct_subsets"] and b["seed"] == 1
    sa = (d / "ground_truth" / "scores.jsonl").read_text()
    sb = (d / "ground_truth_seed1" / "scores.jsonl").read_text()
    assert sa != sb  # other training seeds and episodes: the truth's own noise
    nc = studies.noise_ceiling(pipeline.reopen(d))
    assert 0.0 <= nc["nmi"] <= 1.0 and nc["pairs"] > 0
    assert -1.0 <= nc["spearman"] <= 1.0 and -1.0 <= nc["affinity_correlation"] <= 1.0
    ag = studies.agreement(pipeline.reopen(d))
    assert ag["noise_ceiling"]["nmi"] == nc["nmi"] and "no_signal_tasks" in ag


def test_noise_ceiling_of_a_truth_with_itself_is_perfect(run_with_truths, tmp_path):
    """Seed 1's folder replaced by a copy of seed 0's: the ceiling must then be exactly 1."""
    d = tmp_path / "run"
    shutil.copytree(run_with_truths, d)
    shutil.rmtree(d / "ground_truth_seed1")
    shutil.copytree(d / "ground_truth", d / "ground_truth_seed1")
    nc = studies.noise_ceiling(pipeline.reopen(d))
    assert nc["nmi"] == pytest.approx(1.0) and nc["spearman"] == pytest.approx(1.0)
    assert nc["spearman_within_task"] == pytest.approx(1.0) and nc["affinity_correlation"] == pytest.approx(1.0)


def test_baselines_include_k1_kn_and_the_ground_truth_grouping(run_with_truths):
    parts = studies.baseline_partitions(pipeline.reopen(run_with_truths), seeds=2)
    assert parts["single-task"] == [[i] for i in range(6)] and parts["one-group"] == [list(range(6))]
    assert parts["ground-truth"] == json.loads((run_with_truths / "ground_truth" / "groups.json").read_text())["groups"]
    assert {"estimated", "gradient-similarity", "random-0", "random-1"} <= parts.keys()


def test_equal_budget_rule_gives_every_group_the_same_steps(tmp_path):
    family = tasks.make("planted-toy")
    cfg = RunConfig(preset="smoke", seed=0, groups=GroupConfig(budget="equal"))
    r = pipeline.open_run(family, cfg, tmp_path / "run")
    from policygradex.config import group_ppo

    meta = r.config.meta.ppo.total_steps
    assert group_ppo(r.config, 2, 3).total_steps == meta // 3 == group_ppo(r.config, 1, 3).total_steps
    proportional = pipeline.open_run(family, RunConfig(preset="smoke"), tmp_path / "p").config
    assert group_ppo(proportional, 2, 3).total_steps == meta * 2 // 6
    assert group_ppo(proportional, 1, 3).total_steps == meta // 6


def test_another_budget_rule_trains_apart_but_reuses_partitions_it_trains_alike(tmp_path):
    """compare-groupings under a second rule writes groupings_<rule>.json beside the first; k = 1 and k = n get the
    same steps under both rules, so their policies are the first rule's (not retrained, same scores); a partition
    whose groups get other steps trains in baselines/<rule>-budget/."""
    family = tasks.make("planted-toy")
    cfg = RunConfig(preset="smoke", seed=0, meta=MetaConfig(total_steps=12288), groups=GroupConfig(eval_episodes=4),
                    features=FeatureConfig(samples_per_task=128), estimate=EstimateConfig(episodes=4))
    d = tmp_path / "run"
    pipeline.run(family, cfg, d)
    run = pipeline.reopen(d)
    own = studies.compare_groupings(run, seeds=2)
    other = studies.compare_groupings(run, seeds=2, budget="equal")
    assert own["budget"] == "proportional" and other["budget"] == "equal"
    assert json.loads((d / "groupings_equal.json").read_text()) == other
    assert json.loads((d / "groupings.json").read_text()) == own  # the first rule's results are left as they were
    for name in ("one-group", "single-task"):
        assert other["partitions"][name] == own["partitions"][name]
        assert not (d / "baselines" / "equal-budget" / name).exists()
    moved = 0
    for name, p in other["partitions"].items():
        groups = p["groups"]
        differs = any(group_ppo(run.config, len(g), len(groups), "equal") != group_ppo(run.config, len(g), len(groups))
                      for g in groups)
        assert (d / "baselines" / "equal-budget" / name).exists() == differs, name
        moved += differs
    # smoke planted-toy: meta 12288 steps, k = 3 of 6 tasks; a group of 1 gets 12288/6 steps or 12288/3
    sizes = {name: sorted(len(g) for g in p["groups"]) for name, p in other["partitions"].items()}
    assert moved == sum(s != [2, 2, 2] for n, s in sizes.items() if n not in ("one-group", "single-task"))


def test_compare_seeds_command_reports_intervals_and_paired_differences(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare-seeds", "--family", "planted-toy", "--out", str(out), "--preset", "smoke", "--seeds", "2",
                 "--random-seeds", "1", "--meta.total-steps", "12288", "--groups.eval-episodes", "4",
                 "--features.samples-per-task", "128", "--estimate.episodes", "4"])
    assert code == 0, capsys.readouterr().err
    res = json.loads((out / "comparison.json").read_text())
    assert res["seeds"] == [0, 1] and (out / "seed_0" / "groupings.json").exists() and (out / "seed_1" / "results.json").exists()
    assert res["skipped"] == {} and "tag" in res["estimated_minus"]
    for name in ("estimated", "random", "gradient-similarity", "tag", "one-group", "single-task", "theta*"):
        s = res["summary"][name]
        vals = [res["per_seed"][str(seed)][name] for seed in (0, 1)]
        assert s["mean"] == pytest.approx(np.mean(vals))
        assert s["ci95"][0] <= s["mean"] <= s["ci95"][1]
    d = res["estimated_minus"]["random"]
    diffs = [res["per_seed"][str(s)]["estimated"] - res["per_seed"][str(s)]["random"] for s in (0, 1)]
    assert d["diff"] == pytest.approx(np.mean(diffs)) and d["wins"] == pytest.approx(np.mean([x > 0 for x in diffs]))
