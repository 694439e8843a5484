"""Every bad input is refused up front in one line (issue #10).

For each case: exit status exactly 2, exactly one line on stderr, starting ``error:``, no traceback,
and nothing written — no new output directory, and a run directory's files unchanged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from policygradex import pipeline, tasks
from policygradex.cli import main

PARSE = [  # the command line itself
    ("run --k 2.5", "--k: '2.5' is not an integer"),
    ("run --seed x1", "--seed: 'x1' is not an integer"),
    ("run --bogus 3", "unrecognized argument"),
    ("run --preset tiny", "invalid choice 'tiny'"),
    ("train --total-steps abc", "--total-steps: 'abc' is not an integer"),
    ("nosuch", "commands are"),
    ("features", "missing option for policygradex features: --run"),
    ("run --estimate.relative-norm 1e", "is not a number"),
    ("run --workers two", "'two' is not an integer"),
    ("run --meta.tag-every 1.5", "--meta.tag-every: '1.5' is not an integer"),
    ("run --executor cluster", "invalid choice 'cluster'"),
    ("run --method kmeans", "invalid choice 'kmeans'"),
    ("run --estimate.score foo", "invalid choice 'foo'"),
    ("run --estimate.affinity foo", "invalid choice 'foo'"),
    ("evaluate", "missing option"),
    ("run --stop-after nothing", "invalid choice 'nothing'"),
    ("train --tasks a", "'a' is not an integer"),
    ("run --meta.arch transformer", "invalid choice 'transformer'"),
    ("train --arch cnn", "invalid choice 'cnn'"),
]

VALUES = [  # well-formed options whose values are refused before any work (OUT: a fresh directory)
    ("run --family planted-toy --out OUT --k 0", "k=0"),
    ("run --family planted-toy --out OUT --k 7", "k=7 is larger"),
    ("run --family planted-toy --out OUT --seed -1", "seed=-1"),
    ("run --family planted-toy --out OUT --workers 0", "workers=0"),
    ("run --family planted-toy --out OUT --meta.total-steps 0", "total_steps=0"),
    ("run --family planted-toy --out OUT --meta.total-steps 10", "less than one rollout"),
    ("run --family planted-toy --out OUT --meta.depth 0", "depth=0"),
    ("run --family planted-toy --out OUT --meta.width 0", "width=0"),
    ("run --family planted-toy --out OUT --meta.tag-every -1", "meta.tag_every=-1 must be an integer ≥ 0"),
    ("run --family planted-toy --out OUT --meta.arch sm --meta.depth 3", "meta.arch='sm' needs depth ≥ 4, got depth=3"),
    ("run --family planted-toy --out OUT --meta.experts 3", "meta.experts=3 applies to the multitask architectures only"),
    ("run --family planted-toy --out OUT --meta.arch paco --meta.experts 0", "meta.experts=0 must be a positive integer"),
    ("run --family planted-toy --out OUT --meta.arch moore --meta.experts 80", "choose experts ≤ width"),
    ("run --family planted-toy --out OUT --meta.arch care --meta.from-sb3 OUT/model.zip",
     "leave meta.arch at 'mlp' with meta.from_sb3"),
    ("run --family planted-toy --out OUT --features.d 0", "d=0"),
    ("run --family planted-toy --out OUT --features.samples-per-task 0", "samples_per_task=0"),
    ("run --family planted-toy --out OUT --features.envs-per-task 0", "envs_per_task=0"),
    ("run --family planted-toy --out OUT --estimate.num-subsets 0", "num_subsets=0"),
    ("run --family planted-toy --out OUT --estimate.subset-size 1", "subset_size=1"),
    ("run --family planted-toy --out OUT --estimate.subset-size 7", "subset_size=7"),
    ("run --family planted-toy --out OUT --estimate.min-coverage -1", "min_coverage=-1"),
    ("run --family planted-toy --out OUT --estimate.l2 0", "l2=0"),
    ("run --family planted-toy --out OUT --estimate.l2 nan", "l2=nan"),
    ("run --family planted-toy --out OUT --estimate.l2 inf", "l2=inf"),
    ("run --family planted-toy --out OUT --estimate.relative-norm nan", "relative_norm=nan"),
    ("run --family planted-toy --out OUT --estimate.relative-norm -0.1", "relative_norm=-0.1"),
    ("run --family planted-toy --out OUT --estimate.episodes 0", "episodes=0"),
    ("run --family planted-toy --out OUT --estimate.chunk 0", "chunk=0"),
    ("run --family planted-toy --out OUT --groups.total-steps 0", "total_steps=0"),
    ("run --family planted-toy --out OUT --groups.lr-scale nan", "lr_scale=nan"),
    ("run --family planted-toy --out OUT --groups.total-steps 100", "less than one rollout for a group"),
    ("run --family planted-toy --out OUT --groups.lr-scale 0", "lr_scale=0"),
    ("run --family planted-toy --out OUT --groups.eval-episodes 0", "eval_episodes=0"),
    ("run --family planted-toy --out OUT --threads 0", "threads=0"),
    ("run --family nosuch --out OUT", "unknown family 'nosuch'"),
    ("train --family planted-toy --out OUT --learning-rate inf", "learning_rate=inf"),
    ("train --family planted-toy --out OUT --learning-rate -1", "learning_rate=-1"),
    ("train --family planted-toy --out OUT --tasks 9", "task index 9"),
    ("train --family planted-toy --out OUT --tasks 0 0", "duplicates"),
    ("train --family planted-toy --out OUT --eval-episodes 0", "eval-episodes"),
    ("train --family planted-toy --out OUT --envs-per-task 0", "envs_per_task=0"),
    ("train --family planted-toy --out OUT --seed -2", "seed=-2"),
    ("train --family planted-toy --out OUT --arch sm --depth 2", "arch='sm' needs depth ≥ 4"),
    ("train --family planted-toy --out OUT --arch care --experts -1", "experts=-1 must be a positive integer"),
    ("train --family planted-toy --out OUT --init OUT/missing.pt", "does not exist"),
    ("evaluate --checkpoint OUT/missing.pt", "does not exist"),
    ("evaluate --checkpoint OUT/missing.pt --episodes 0", "episodes 0"),
]


def _check_one_line(capsys, code: int, expected: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    assert expected in lines[0], lines[0]
    return lines[0]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize(("args", "expected"), PARSE + VALUES, ids=[a for a, _ in PARSE + VALUES])
def test_bad_option_is_one_line_and_writes_nothing(args, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default --out of a command lands here if it is ever used
    out = tmp_path / "out"
    code = main(args.replace("OUT", str(out)).split())
    _check_one_line(capsys, code, expected)
    assert list(tmp_path.iterdir()) == [], "a refused command wrote something"


# ---- files in a run directory ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("finished") / "run"
    pipeline.run(tasks.make("planted-toy"), pipeline.RunConfig(preset="smoke", seed=0), d)
    return d


def _write(rel: str, data: bytes | str):
    def damage(d: Path) -> None:
        p = d / rel
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data)

    return damage


def _delete(*rels: str):
    def damage(d: Path) -> None:
        for rel in rels:
            p = d / rel
            shutil.rmtree(p) if p.is_dir() else p.unlink()

    return damage


def _both(*fns):
    def damage(d: Path) -> None:
        for fn in fns:
            fn(d)

    return damage


def _config_edit(fn):
    def damage(d: Path) -> None:
        cfg = json.loads((d / "config.json").read_text())
        fn(cfg)
        (d / "config.json").write_text(json.dumps(cfg))

    return damage


def _npy(rel: str, array: np.ndarray):
    def damage(d: Path) -> None:
        np.save(d / rel, array)

    return damage


FILES = [  # (damage, command on the run directory RUN, expected words)
    ("config-random-bytes", _write("config.json", bytes(range(256))), "report --run RUN", "config.json"),
    ("config-a-list", _write("config.json", "[1, 2]"), "report --run RUN", "not a run configuration"),
    ("config-missing-key", _config_edit(lambda c: c.pop("k")), "report --run RUN", "lacks the key 'k'"),
    ("config-wrong-type", _config_edit(lambda c: c.update(k="3")), "report --run RUN", "k='3' must be an integer"),
    ("config-unknown-key", _config_edit(lambda c: c.update(extra=1)), "cluster --run RUN", "unknown key 'extra'"),
    ("config-tag-every-negative", _config_edit(lambda c: c["meta"].update(tag_every=-3)), "report --run RUN",
     "meta.tag_every=-3 must be ≥ 0"),
    ("config-bad-choice", _config_edit(lambda c: c.update(method="kmeans")), "cluster --run RUN", "method='kmeans'"),
    ("config-train-run", _config_edit(lambda c: c.update(command="train")), "cluster --run RUN", "holds a `train` run"),
    ("groups-truncated", _write("groups.json", '{"groups": [[0, 3'), "report --run RUN", "groups.json"),
    ("groups-task-17", _write("groups.json", '{"groups": [[0, 17], [1, 2], [3, 4, 5]]}'), "report --run RUN",
     "not a partition"),
    ("groups-missing-task", _write("groups.json", '{"groups": [[0], [1, 2], [3, 4]]}'), "train-groups --run RUN",
     "not a partition"),
    ("affinity-corrupt", _both(_delete("groups.json"), _write("affinity.npy", b"garbage")), "cluster --run RUN",
     "affinity.npy"),
    ("affinity-wrong-shape", _both(_delete("groups.json"), _npy("affinity.npy", np.zeros((4, 4)))), "cluster --run RUN",
     "shape (4, 4)"),
    ("features-corrupt", _write("features/task_0.pt", b"garbage"), "compare-groupings --run RUN", "task_0.pt"),
    ("features-missing", _delete("features/task_2.pt"), "compare-groupings --run RUN", "task_2.pt is missing"),
    ("projection-corrupt", _write("features/projection.json", "{"), "approx-error --run RUN", "projection.json"),
    ("group-eval-corrupt", _write("groups/0/eval.json", "{"), "report --run RUN", "eval.json"),
    ("group-eval-not-eval", _write("groups/0/eval.json", "[]"), "report --run RUN", "not an evaluation"),
    ("meta-eval-corrupt", _write("meta/eval.json", "nope"), "report --run RUN", "eval.json"),
    ("meta-policy-corrupt", _write("meta/policy.pt", b"garbage"), "approx-error --run RUN", "policy.pt"),
    ("meta-policy-missing", _both(_delete("meta/policy.pt"), _delete("groups")), "train-groups --run RUN",
     "policy.pt is missing; run `policygradex run --family planted-toy"),
    ("subsets-garbage", _write("subsets.json", '{"subsets": 3}'), "approx-error --run RUN", "no valid subsets"),
    ("subsets-missing", _both(_delete("subsets.json")), "approx-error --run RUN", "run `policygradex estimate"),
    ("scores-corrupt", _both(_delete("affinity.npy", "groups.json"), _write("scores.jsonl", "{]\n")),
     "estimate --run RUN", "scores.jsonl"),
    ("weights-corrupt", _write("estimate/weights.pt", b"garbage"), "approx-error --run RUN", "weights.pt"),
    ("weights-not-a-matrix", lambda d: __import__("torch").save({"w": 1}, d / "estimate/weights.pt"),
     "approx-error --run RUN", "[m, d] tensor"),
    ("no-ground-truth", lambda d: None, "agreement --run RUN", "run `policygradex ground-truth --run"),
    ("directions-0", lambda d: None, "approx-error --run RUN --directions 0", "directions=0"),
    ("random-seeds-0", lambda d: None, "compare-groupings --run RUN --random-seeds 0", "random_seeds=0"),
    ("truth-total-steps-0", lambda d: None, "ground-truth --run RUN --total-steps 0", "total_steps=0"),
    ("truth-steps-below-rollout", lambda d: None, "ground-truth --run RUN --total-steps 5", "less than one rollout"),
    ("another-run", lambda d: None, "run --family planted-toy --out RUN --preset smoke --seed 5", "holds another run"),
    ("not-a-run", _delete("config.json"), "report --run RUN", "holds no run"),
    ("out-is-a-file", lambda d: None, "run --family planted-toy --out RUN/config.json", "is a file"),
    ("out-under-a-file", lambda d: None, "run --family planted-toy --out RUN/config.json/sub", "config.json"),
    ("out-not-empty", _both(_delete("config.json")), "run --family planted-toy --out RUN --preset smoke",
     "not empty"),
]


@pytest.mark.parametrize(("damage", "args", "expected"), [f[1:] for f in FILES], ids=[f[0] for f in FILES])
def test_bad_file_is_one_line_and_changes_nothing(damage, args, expected, finished_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "run"
    shutil.copytree(finished_run, d)
    damage(d)
    before = _snapshot(tmp_path)
    code = main(args.replace("RUN", str(d)).split())
    _check_one_line(capsys, code, expected)
    assert _snapshot(tmp_path) == before, "a refused command changed the run directory"


def test_the_table_is_long_enough():
    assert len(PARSE) + len(VALUES) + len(FILES) >= 60
