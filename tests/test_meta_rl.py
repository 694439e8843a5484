"""The meta-RL protocol end to end on tiny budgets (issue 13, item 4): `policygradex meta-rl`."""

import json
import shutil

import numpy as np
import pytest
import torch

from policygradex import meta_rl, pipeline, tasks
from policygradex.cli import main
from policygradex.config import EstimateConfig, FeatureConfig, MetaConfig
from policygradex.errors import ConfigError
from policygradex.rl.checkpoint import load_checkpoint
from policygradex.rl.evaluate import evaluate

TINY = ["--seeds", "2", "--total-steps", "160", "--maml.envs-per-task", "1", "--maml.rollout-steps", "8",
        "--maml.outer-epochs", "1", "--adapt-steps", "0", "2", "--eval-episodes", "1", "--assign-samples", "16",
        "--hessian-probes", "2"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A cartpole-meta-10 run through the cluster stage on tiny budgets (θ*, features, groups)."""
    d = tmp_path_factory.mktemp("meta") / "run"
    cfg = pipeline.RunConfig(
        preset="smoke", meta=MetaConfig(total_steps=10240, depth=2, width=16, tag_every=0),
        features=FeatureConfig(samples_per_task=64, d=16), estimate=EstimateConfig(score="objective", num_subsets=20),
    )
    pipeline.run(tasks.make("cartpole-meta-10"), cfg, d, stop_after="cluster")
    return d


def _records(d, seed, grouping, k):
    return [json.loads((d / "meta_rl" / f"seed_{seed}" / grouping / str(g) / "result.json").read_text()) for g in range(k)]


def test_protocol_smoke_run_writes_the_tables_and_they_add_up(run_dir, capsys):
    assert main(["meta-rl", "--run", str(run_dir), *TINY]) == 0
    out = capsys.readouterr().out
    assert "estimated" in out and "(paper 159.2)" in out
    res = json.loads((run_dir / "meta_rl.json").read_text())
    assert res["settings"] == ["0", "2"] and res["seeds"] == [0, 1] and res["test_family"] == "cartpole-meta-10-test"
    methods = ["theta-star", "one-group", "random", "gradient-similarity", "estimated"]
    assert res["methods"] == methods and sorted(res["main"]["2"]) == sorted(methods)
    for m in methods:
        entry = res["main"]["2"][m]
        assert len(entry["per_seed"]) == 2 and entry["mean"] == pytest.approx(np.mean(entry["per_seed"]))
        assert entry["ci95"][0] <= entry["mean"] <= entry["ci95"][1]
    assert res["main"]["2"]["estimated"]["paper"] == 159.2
    groups = json.loads((run_dir / "groups.json").read_text())["groups"]
    for s in (0, 1):
        seed_out = res["per_seed"][str(s)]
        assert seed_out["estimated"]["groups"] == groups
        records = _records(run_dir, s, "estimated", len(groups))
        for setting in ("0", "2"):
            scores = seed_out["estimated"]["scores"][setting]
            # every rule's score is the mean over held-out tasks of the assigned group's return ...
            for rule in ("adapt", "estimate", "fixed"):
                picks = seed_out["estimated"]["assignment"][rule]
                assert len(picks) == 50
                assert scores[rule] == pytest.approx(np.mean([records[g]["settings"][setting]["test"][j]
                                                              for j, g in enumerate(picks)]))
                assert scores[rule] <= scores["oracle"] + 1e-9  # ... and none beats the best group in hindsight
        largest = max(range(len(groups)), key=lambda g: (len(groups[g]), -g))
        assert set(seed_out["estimated"]["assignment"]["fixed"]) == {largest}
        sel = np.array([r["select"]["test"] for r in records])
        assert seed_out["estimated"]["assignment"]["adapt"] == np.argmax(sel, axis=0).tolist()
        hess = seed_out["estimated"]["hessian"]
        assert [h["tasks"] for h in hess] == groups and all(np.isfinite(h["trace"]) for h in hess)
    # known answer: θ* with 0 adaptation steps is θ* evaluated on the held-out tasks with the protocol's seed
    test = tasks.make("cartpole-meta-10-test")
    theta = load_checkpoint(run_dir / "meta" / "policy.pt").policy
    job = meta_rl._job(pipeline.reopen(run_dir), meta_rl.MetaRLConfig(), test, 1, "theta-star", 0, list(range(10)), True)
    ev = evaluate(theta, test, range(50), 1, job.eval_seed)
    assert res["main"]["0"]["theta-star"]["per_seed"][1] == pytest.approx(np.mean(list(ev.mean_return.values())))
    md = (run_dir / "meta_rl.md").read_text()
    assert "| **PolicyGradEx** (estimated grouping) + MAML |" in md and "159.2" in md and "Tr H" in md
    assert "(b) the estimate's own answer" in md


def test_killed_protocol_resumes_to_the_same_artifacts(run_dir):
    d = run_dir / "meta_rl"
    if not (run_dir / "meta_rl.json").exists():
        assert main(["meta-rl", "--run", str(run_dir), *TINY]) == 0
    before = (run_dir / "meta_rl.json").read_bytes()
    weights = torch.load(d / "seed_1" / "estimated" / "0" / "policy.pt", weights_only=True)["state_dict"]
    # as if killed while group 0 of seed 1 trained and before seed 1's random grouping finished
    shutil.rmtree(d / "seed_1" / "estimated" / "0")
    (d / "seed_1" / "random-0" / "1" / "result.json").unlink()
    (run_dir / "meta_rl.json").unlink()
    assert main(["meta-rl", "--run", str(run_dir), *TINY]) == 0
    assert (run_dir / "meta_rl.json").read_bytes() == before
    again = torch.load(d / "seed_1" / "estimated" / "0" / "policy.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(weights[k], again[k]) for k in weights)


def test_other_settings_on_the_same_protocol_are_refused(run_dir, capsys):
    if not (run_dir / "meta_rl" / "config.json").exists():
        assert main(["meta-rl", "--run", str(run_dir), *TINY]) == 0
    capsys.readouterr()
    assert main(["meta-rl", "--run", str(run_dir), *TINY[:-2], "--hessian-probes", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "hessian_probes" in err and "delete" in err


def test_a_run_on_a_family_without_held_out_tasks_is_one_line(tmp_path, capsys):
    d = tmp_path / "toy"
    pipeline.open_run(tasks.make("planted-toy"), pipeline.RunConfig(preset="smoke"), d)
    assert main(["meta-rl", "--run", str(d), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'planted-toy'" in err and "cartpole-meta-10" in err
    assert not (d / "meta_rl").exists()


def test_a_run_without_groups_names_the_command(tmp_path, capsys):
    d = tmp_path / "cp"
    pipeline.open_run(tasks.make("cartpole-meta-10"), pipeline.RunConfig(preset="smoke"), d)
    assert main(["meta-rl", "--run", str(d), *TINY]) == 2
    err = capsys.readouterr().err
    assert "policygradex run --family cartpole-meta-10" in err or "policygradex cluster" in err
    assert not (d / "meta_rl").exists()


@pytest.mark.parametrize("kwargs, needle", [
    ({"seeds": 0}, "--seeds 0"),
    ({"adapt_steps": ()}, "--adapt-steps is empty"),
    ({"adapt_steps": (1, -3)}, "--adapt-steps -3"),
    ({"adapt_steps": (1, 1)}, "lists a setting twice"),
    ({"adapt_lr": 0.0}, "--adapt-lr 0.0"),
    ({"eval_episodes": 0}, "--eval-episodes 0"),
    ({"hessian_probes": 0}, "--hessian-probes 0"),
])
def test_bad_settings_are_one_clear_sentence(kwargs, needle):
    with pytest.raises(ConfigError) as e:
        meta_rl.MetaRLConfig(**kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)
