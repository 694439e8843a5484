"""Every ```python block of README.md runs as written, and does what the README says (issue 17, item 4).

The blocks are read from the README at test time, so the README cannot drift from the code: a changed
block runs as changed, and a new block without a check below fails ``test_every_block_has_a_check``.
Each block runs in a fresh namespace in a temporary working directory (relative paths such as
``runs/toy`` land there); the family registry is restored afterwards.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from policygradex import tasks
from policygradex.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def _check_from_gymnasium(ns: dict, block: str) -> None:
    acrobot = ns["my_acrobot"]()
    assert acrobot.n == 3 and acrobot.name == "my-acrobot"
    # "my_tasks.py in the folder you run policygradex from ... name it by module:factory on the command line"
    Path("my_tasks.py").write_text(block)
    path = list(sys.path)
    try:
        family = tasks.make("my_tasks:my_acrobot")
        assert family.n == 3 and family.discrete and family.ref == "my_tasks:my_acrobot"
        assert main(["run", "--family", "my_tasks:my_acrobot", "--out", "runs/acrobot", "--preset", "smoke",
                     "--stop-after", "meta", "--log-format", "plain"]) == 0
    finally:  # the factory's module and the working directory on the path stay with this test
        sys.path[:] = path
        sys.modules.pop("my_tasks", None)
    cfg = json.loads(Path("runs/acrobot/config.json").read_text())
    assert cfg["family"]["factory"] == "my_tasks:my_acrobot"
    assert cfg["meta"]["ppo"]["total_steps"] == 12_288 == 4_096 * 3  # "what the rule gives for n = 3"
    # set_attributes=True: the parameter is an attribute of each task's environment.
    for i, mass in enumerate((1.0, 1.5, 2.0)):
        env = family.make_env(i)
        try:
            assert env.unwrapped.LINK_MASS_1 == mass
        finally:
            env.close()
    venv = family.make_vec(range(3), 1)
    try:
        obs = venv.reset(0)
        assert obs.shape == (3, family.obs_dim)
        np.testing.assert_array_equal(obs[:, -3:], np.eye(3))  # one-hot task id of size n
        res = venv.step(np.zeros(3, dtype=np.int64))
        assert res.obs.shape == (3, family.obs_dim)
    finally:
        venv.close()


def _check_pipeline(ns: dict) -> None:
    result, family = ns["result"], ns["family"]
    assert result.groups == [[0, 3], [1, 4], [2, 5]]  # "the planted groups"
    assert sorted(map(sorted, result.groups)) == sorted(map(list, family.planted_groups))
    assert result.affinity.shape == (6, 6)  # "the n×n task affinity U"
    np.testing.assert_allclose(result.affinity, result.affinity.T)
    assert (Path("runs/toy") / "results.json").is_file()


def _check_train_evaluate(ns: dict, capsys) -> None:
    result, scores, sub = ns["result"], ns["scores"], ns["sub"]
    assert set(scores.mean_return) == set(range(6))  # {task index: mean return}
    assert str(scores.mean_return) in capsys.readouterr().out
    assert result.policy is not None and sub.policy is not None
    # Fine-tuned from the meta-policy: it starts from the same weights and moves away from them.
    start = dict(result.policy.actor.named_parameters())
    moved = [not np.allclose(p.detach().numpy(), start[k].detach().numpy()) for k, p in sub.policy.actor.named_parameters()]
    assert any(moved)


CHECKS: dict[str, Callable] = {
    "tasks.from_gymnasium(": _check_from_gymnasium,
    "pipeline.run(family, pipeline.RunConfig(k=3, seed=0, preset=\"smoke\")": _check_pipeline,
    "sub = train(family, [0, 3], cfg, seed=1, init=result.policy)": _check_train_evaluate,
}


def _check_for(block: str) -> str:
    keys = [k for k in CHECKS if k in block]
    assert len(keys) == 1, f"README python block has {len(keys)} checks in tests/test_readme.py:\n{block}"
    return keys[0]


def test_every_block_has_a_check() -> None:
    assert len(BLOCKS) == 3, "the README's python blocks changed: add their checks to CHECKS"
    assert sorted(_check_for(b) for b in BLOCKS) == sorted(CHECKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, monkeypatch, capsys) -> None:
    block = BLOCKS[index]
    key = _check_for(block)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tasks, "_REGISTRY", dict(tasks._REGISTRY))  # the block may register a family
    ns: dict = {"__name__": f"readme_block_{index}"}
    exec(compile(block, f"README.md python block {index}", "exec"), ns)
    check = CHECKS[key]
    if check is _check_train_evaluate:
        check(ns, capsys)
    elif check is _check_from_gymnasium:
        check(ns, block)
    else:
        check(ns)
