import json
import subprocess
import sys

import pytest

from policygradex.cli import main

TOY_TRAIN = ["train", "--family", "planted-toy", "--total-steps", "6144", "--eval-episodes", "2", "--no-tensorboard"]


def run_cli(*args):
    """Run the real command in a subprocess: exit code, stdout, stderr."""
    p = subprocess.run([sys.executable, "-m", "policygradex.cli", *args], capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def test_families_lists_every_family_name_first(capsys):
    from policygradex import tasks

    assert main(["families"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == tasks.names()
    toy = next(ln for ln in lines if ln.startswith("planted-toy"))
    assert "n=6" in toy and "Discrete(4)" in toy and "return" in toy


def test_train_writes_run_directory_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TOY_TRAIN, "--out", str(out)]) == 0
    for name in ("config.json", "policy.pt", "eval.json", "metrics.jsonl"):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["family"]["name"] == "planted-toy" and cfg["ppo"]["total_steps"] == 6144
    metrics = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics and all("step" in m for m in metrics) and any("train/policy_loss" in m for m in metrics)
    ev = json.loads((out / "eval.json").read_text())
    assert set(ev["mean_return"]) == {str(i) for i in range(6)}
    mtime = (out / "policy.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main([*TOY_TRAIN, "--out", str(out)]) == 0  # same run: nothing retrained
    assert "already holds this finished run" in capsys.readouterr().out
    assert (out / "policy.pt").stat().st_mtime_ns == mtime
    # evaluate the checkpoint, fine-tune from it
    assert main(["evaluate", "--checkpoint", str(out / "policy.pt"), "--episodes", "2", "--out", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["family"] == "planted-toy-v1"
    ft = tmp_path / "ft"
    assert main([*TOY_TRAIN, "--out", str(ft), "--tasks", "0", "3", "--init", str(out / "policy.pt")]) == 0
    assert json.loads((ft / "config.json").read_text())["tasks"] == [0, 3]


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--family", "nope"], "unknown family 'nope'; known families: cartpole-10"),
        (["train", "--family", "planted-toy", "--total-steps", "0"], "total_steps=0 must be a positive integer"),
        (["train", "--family", "planted-toy", "--total-steps", "-5"], "total_steps=-5 must be a positive integer"),
        (["train", "--family", "planted-toy", "--total-steps", "10"], "less than one rollout"),
        (["train", "--family", "planted-toy", "--eval-episodes", "0"], "--eval-episodes 0"),
        (["train", "--family", "planted-toy", "--tasks", "9"], "task index 9 is out of range"),
        (["evaluate", "--checkpoint", "missing.pt"], "does not exist"),
    ],
)
def test_bad_input_one_line_status_2_nothing_written(tmp_path, args, message):
    # Every command is given an output it would write on success, so "nothing written" can fail.
    out = tmp_path / ("out" if args[0] == "train" else "results.json")
    code, stdout, stderr = run_cli(*args, "--out", str(out))
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], stderr
    assert "Traceback" not in stderr
    assert not out.exists()


def test_bad_checkpoints_and_foreign_directories(tmp_path):
    (tmp_path / "corrupt.pt").write_bytes(b"\x00garbage")
    code, _, err = run_cli("evaluate", "--checkpoint", str(tmp_path / "corrupt.pt"))
    assert code == 2 and "corrupt" in err and len(err.strip().splitlines()) == 1
    # a run directory of another run is refused, and left as it was
    run = tmp_path / "run"
    assert main([*TOY_TRAIN, "--out", str(run)]) == 0
    before = sorted(p.name for p in run.iterdir())
    code, _, err = run_cli(*TOY_TRAIN, "--out", str(run), "--seed", "1")
    assert code == 2 and "holds another run" in err and "seed" in err
    assert sorted(p.name for p in run.iterdir()) == before
    # a checkpoint of another family
    code, _, err = run_cli("train", "--family", "cartpole-10", "--init", str(run / "policy.pt"), "--out", str(tmp_path / "x"))
    assert code == 2 and "belongs to family planted-toy" in err
    assert not (tmp_path / "x").exists()
    # a folder with unrelated files
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    code, _, err = run_cli(*TOY_TRAIN, "--out", str(tmp_path / "junk"))
    assert code == 2 and "holds no policygradex run" in err


def test_another_run_names_each_differing_setting_with_both_values(tmp_path):
    from policygradex.errors import PolicyGradExError
    from policygradex.rundir import open_run_dir

    made = {"seed": 0, "estimate": {"score": "rollout", "l2": 0.01}, "meta": {"policy": {"arch": "mlp"}}}
    open_run_dir(tmp_path / "run", made)
    asked = {"seed": 0, "estimate": {"score": "surrogate", "l2": 0.01}, "meta": {"policy": {"arch": "mlp", "experts": 4}}}
    with pytest.raises(PolicyGradExError) as err:
        open_run_dir(tmp_path / "run", asked)
    assert ('its config differs in: estimate.score: "rollout" there, "surrogate" here; '
            'meta.policy.experts: unset there, 4 here)') in str(err.value)
    assert "pass that run's settings to resume it" in str(err.value)
    assert open_run_dir(tmp_path / "run", made) == tmp_path / "run"  # its own settings still resume it
