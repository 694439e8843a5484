"""An existing Stable-Baselines3 PPO model as θ* (issue 16): a short real SB3 training on cartpole-10,
mapped onto our actor-critic and used by the pipeline through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from policygradex import tasks
from policygradex.cli import main
from policygradex.rl.checkpoint import load_checkpoint
from policygradex.rl.policy import log_prob

sb3 = pytest.importorskip("stable_baselines3")

from policygradex.rl.sb3 import load_sb3_policy, make_sb3_env  # noqa: E402


@pytest.fixture(scope="module")
def cartpole_model(tmp_path_factory) -> Path:
    """SB3's default PPO MlpPolicy trained 2,560 steps on cartpole-10 (observations with task ids)."""
    family = tasks.make("cartpole-10")
    model = sb3.PPO("MlpPolicy", make_sb3_env(family), n_steps=64, batch_size=128, n_epochs=2, seed=0, device="cpu")
    model.learn(2560)
    path = tmp_path_factory.mktemp("sb3") / "cartpole10_ppo.zip"
    model.save(path)
    return path


def test_sb3_policy_maps_onto_our_log_prob_and_value(cartpole_model):
    family = tasks.make("cartpole-10")
    model = sb3.PPO.load(cartpole_model, device="cpu")
    ours = load_sb3_policy(cartpole_model, family)
    assert (ours.cfg.depth, ours.cfg.width, ours.cfg.activation) == (3, 64, "tanh")
    venv = family.make_vec(range(family.n), 2)
    obs = torch.as_tensor(np.concatenate([venv.reset(s) for s in range(3)]))
    venv.close()
    actions = torch.randint(0, 2, (len(obs),), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        values, sb_logp, _ = model.policy.evaluate_actions(obs, actions)
    np.testing.assert_allclose(log_prob(ours.actor, ours.actor_params(), obs, actions).detach(), sb_logp, atol=1e-5)
    np.testing.assert_allclose(ours.value(obs).detach(), values.squeeze(-1), atol=1e-5)
    assert not np.allclose(sb_logp, np.log(0.5))  # trained: not the uniform initial policy


def _refused(args: list[str], capsys, expected: str) -> None:
    code = main(args)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


def test_unmappable_or_mismatched_model_is_one_line(tmp_path, capsys):
    family = tasks.make("cartpole-10")
    uneven = sb3.PPO("MlpPolicy", make_sb3_env(family), policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [32]}},
                     device="cpu")
    uneven.save(tmp_path / "uneven.zip")
    out = tmp_path / "out"
    _refused(["run", "--family", "cartpole-10", "--out", str(out), "--meta.from-sb3", str(tmp_path / "uneven.zip")],
             capsys, "has hidden layers pi=[64, 64], vf=[32]")
    import gymnasium as gym

    sb3.PPO("MlpPolicy", gym.make("CartPole-v1"), device="cpu").save(tmp_path / "plain.zip")  # no task ids
    _refused(["run", "--family", "cartpole-10", "--out", str(out), "--meta.from-sb3", str(tmp_path / "plain.zip")],
             capsys, "train the model on policygradex.rl.sb3.make_sb3_env(family)")
    _refused(["run", "--family", "cartpole-10", "--out", str(out), "--meta.from-sb3", str(tmp_path / "none.zip")],
             capsys, "does not exist")
    assert not out.exists()


def _sb3_run(model: Path, out: Path, *extra: str) -> None:
    args = ["run", "--family", "cartpole-10", "--out", str(out), "--preset", "smoke", "--meta.from-sb3", str(model),
            "--log-format", "plain", *extra]
    assert main(args) == 0


def test_sb3_model_as_meta_policy_through_the_cli(cartpole_model, tmp_path, capsys):
    """θ* from SB3, then features: the first stages of the pipeline on the imported policy."""
    out = tmp_path / "run"
    _sb3_run(cartpole_model, out, "--stop-after", "features")
    printed = capsys.readouterr().out
    assert "meta: done in" in printed and "features: done in" in printed
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["meta"]["sb3_model"] == str(cartpole_model) and len(cfg["meta"]["sb3_sha256"]) == 64
    assert cfg["meta"]["policy"]["depth"] == 3
    ckpt = load_checkpoint(out / "meta" / "policy.pt", tasks.make("cartpole-10"))
    reference = load_sb3_policy(cartpole_model, tasks.make("cartpole-10"))
    for (k, a), (_, b) in zip(ckpt.policy.state_dict().items(), reference.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    ev = json.loads((out / "meta" / "eval.json").read_text())
    assert ev["imported"] == str(cartpole_model) and set(ev["mean_return"]) == {str(i) for i in range(10)}
    assert not (out / "meta" / "metrics.jsonl").exists()  # nothing was trained here
    assert (out / "features" / "projection.json").is_file()


@pytest.mark.slow
def test_sb3_model_as_meta_policy_end_to_end(cartpole_model, tmp_path, capsys):
    out = tmp_path / "run"
    _sb3_run(cartpole_model, out, "--k", "2")
    res = json.loads((out / "results.json").read_text())
    assert sorted(i for g in res["groups"] for i in g) == list(range(10))
    assert res["meta_training"]["imported"] == str(cartpole_model)
    assert "imported from" in (out / "report.md").read_text()
