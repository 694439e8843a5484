"""Every `policygradex` subcommand runs in a test, with its exit status asserted exactly (issue 17, item 4).

The studies (`approx-error`, `ground-truth`, `agreement`, `compare-groupings`) need a finished run: one
planted-toy smoke run on a small budget is built once per module. Bad input must give exit status 2 and
one `error: ...` line (README, "Command line"), leaving nothing half-written.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from policygradex.cli import main

ROOT = Path(__file__).resolve().parents[1]
RUN = ["run", "--family", "planted-toy", "--preset", "smoke", "--meta.total-steps", "8192",
       "--estimate.episodes", "8", "--groups.eval-episodes", "4"]
# Where each subcommand runs successfully (exit 0) in the suite; the test below checks that this list is
# complete, so a new subcommand without a test fails it.
TESTED = {
    "families": "test_cli.py::test_families_lists_every_family_name_first, test_families_verbose here",
    "meta-rl": "test_meta_rl.py::test_protocol_smoke_run_writes_the_tables_and_they_add_up",
    "train": "test_cli.py::test_train_writes_run_directory_and_resumes",
    "evaluate": "test_cli.py::test_train_writes_run_directory_and_resumes",
    "run": "the finished_run fixture here; test_pipeline.py::test_stage_subcommands_on_one_run_directory",
    "features": "test_pipeline.py::test_stage_subcommands_on_one_run_directory",
    "estimate": "test_pipeline.py::test_stage_subcommands_on_one_run_directory",
    "cluster": "test_pipeline.py::test_stage_subcommands_on_one_run_directory",
    "train-groups": "test_pipeline.py::test_stage_subcommands_on_one_run_directory",
    "report": "test_pipeline.py::test_stage_subcommands_on_one_run_directory, test_studies_and_report_... here",
    "approx-error": "test_studies_and_report_on_a_finished_run here",
    "ground-truth": "test_studies_and_report_on_a_finished_run here",
    "agreement": "test_studies_and_report_on_a_finished_run here",
    "compare-groupings": "test_studies_and_report_on_a_finished_run here",
    "noise-ceiling": "test_studies_and_report_on_a_finished_run here",
    "compare-seeds": "test_grouping_quality.py::test_compare_seeds_command_reports_intervals_and_paired_differences",
}


def run_cli(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    """The real command in a subprocess: exit status, stdout, stderr."""
    p = subprocess.run([sys.executable, "-m", "policygradex.cli", *args], capture_output=True, text=True,
                       timeout=600, cwd=cwd)
    return p.returncode, p.stdout, p.stderr


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def finished_run(tmp_path) -> Path:
    d = tmp_path / "run"
    assert main([*RUN, "--out", str(d)]) == 0
    assert (d / "results.json").is_file()
    return d


def test_help_lists_exactly_the_commands_tested(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    usage = capsys.readouterr().out
    listed = re.search(r"\{([a-z,-]+)\}", usage)
    assert listed is not None, usage
    assert set(listed.group(1).split(",")) == set(TESTED)


def test_families_verbose(capsys) -> None:
    from policygradex import tasks

    assert main(["families", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC: 6 contextual-decision tasks in 3 planted conflicting groups" in out
    assert all(name in out for name in tasks.names())


def test_unknown_command_and_option_exit_2(capsys) -> None:
    for args in (["nosuchcommand"], ["families", "--nosuchoption"]):
        assert main(args) == 2
        assert args[-1] in one_error_line(capsys.readouterr().err)


def test_studies_and_report_on_a_finished_run(finished_run, tmp_path, capsys) -> None:
    """approx-error, ground-truth, agreement, compare-groupings and report on one finished run (one test,
    so that the run is built once even when the suite is spread over processes)."""
    d = finished_run
    capsys.readouterr()
    # Bad numbers: exit 2, one line, nothing written.
    for args, message in (
        (["approx-error", "--directions", "0"], "directions=0 must be at least 1"),
        (["compare-groupings", "--random-seeds", "0"], "random_seeds=0 must be at least 1"),
    ):
        before = sorted(str(p.relative_to(d)) for p in d.rglob("*"))
        assert main([args[0], "--run", str(d), *args[1:]]) == 2, args
        assert message in one_error_line(capsys.readouterr().err)
        assert sorted(str(p.relative_to(d)) for p in d.rglob("*")) == before
    # agreement needs the ground truth first: one clear error, nothing written.
    early = tmp_path / "early"
    shutil.copytree(d, early)
    assert main(["agreement", "--run", str(early)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "ground_truth/groups.json is missing" in line and "policygradex ground-truth" in line
    assert not (early / "agreement.json").exists()

    assert main(["approx-error", "--run", str(d), "--directions", "3"]) == 0
    out = capsys.readouterr().out
    approx = json.loads((d / "approx_error.json").read_text())
    assert approx["directions"] == 3 and approx["tasks"] == 6
    distances = [r["distance"] for r in approx["errors"]]
    assert distances == sorted(distances) and distances[0] == pytest.approx(0.001)
    first = approx["errors"][0]
    assert 0 <= first["first_order"] < first["zeroth_order"]  # the linearisation beats "no change" near θ*
    assert f"{first['first_order']:.3%}" in out
    assert (d / "approx_error.md").is_file() and (d / "figures" / "approx_error.png").stat().st_size > 0

    assert main(["ground-truth", "--run", str(d), "--total-steps", "1024"]) == 0
    out = capsys.readouterr().out
    gt = json.loads((d / "ground_truth" / "groups.json").read_text())
    subsets = json.loads((d / "subsets.json").read_text())["subsets"]
    assert gt["distinct_subsets"] == len({tuple(s["tasks"]) for s in subsets})
    assert len(list((d / "ground_truth" / "subsets").glob("subset_*.json"))) == gt["distinct_subsets"]
    assert sorted(i for g in gt["groups"] for i in g) == list(range(6)) and len(gt["groups"]) == 3
    assert f"true groups: {gt['groups']}" in out
    assert np.load(d / "ground_truth" / "affinity.npy").shape == (6, 6)

    assert main(["agreement", "--run", str(d)]) == 0
    out = capsys.readouterr().out
    ag = json.loads((d / "agreement.json").read_text())
    assert ag["pairs"] == len({(tuple(s["tasks"]), i) for s in subsets for i in s["tasks"]})
    assert 0.0 <= ag["nmi"] <= 1.0 + 1e-12 and ag["true_groups"] == gt["groups"]
    assert ag["speedup"] == pytest.approx(ag["ground_truth_compute_seconds"] / ag["estimate_compute_seconds"]["total"])
    assert f"NMI {ag['nmi']:.3f}" in out

    assert main(["compare-groupings", "--run", str(d), "--random-seeds", "1"]) == 0
    out = capsys.readouterr().out
    cg = json.loads((d / "groupings.json").read_text())
    assert set(cg["partitions"]) == {"estimated", "gradient-similarity", "tag", "one-group", "single-task",
                                     "ground-truth", "random-0"}
    assert cg["skipped"] == {}
    assert cg["partitions"]["ground-truth"]["groups"] == gt["groups"]
    assert cg["partitions"]["one-group"]["groups"] == [list(range(6))]
    est = cg["partitions"]["estimated"]
    assert est["groups"] == json.loads((d / "groups.json").read_text())["groups"]
    assert est["mean"] == pytest.approx(np.mean(list(est["per_task"].values())))
    for name in ("gradient-similarity", "tag", "one-group", "single-task", "ground-truth", "random-0"):
        assert (d / "baselines" / name / "0" / "policy.pt").is_file(), name
        assert f"{name:22s} mean {cg['partitions'][name]['mean']:.3f}" in out
    # TAG: the same clustering of the lookahead the meta-training recorded (default: every 10th update)
    from policygradex import pipeline, studies
    from policygradex.grouping.baselines import tag_affinity
    from policygradex.grouping.cluster import cluster

    run = pipeline.reopen(d)
    U = tag_affinity([run.store.load_tag(6).mean])
    assert cg["partitions"]["tag"]["groups"] == cluster(U / np.abs(U).max(), 3, run.config.method, seed=run.seed).groups
    table = (d / "groupings.md").read_text()
    tag_row = next(line for line in table.splitlines() if line.startswith("| TAG grouping"))
    assert f"{cg['partitions']['tag']['mean']:.2f}" in tag_row and f"`{cg['partitions']['tag']['groups']}`" in tag_row
    # a run whose meta-training predates the hook (no meta.tag_every in config.json, no meta/tag.pt): TAG is
    # skipped with why and how to get it, the rest compared as before (trained baselines reused)
    old = tmp_path / "old"
    shutil.copytree(d, old)
    (old / "meta" / "tag.pt").unlink()
    shutil.rmtree(old / "baselines" / "tag")
    config = json.loads((old / "config.json").read_text())
    del config["meta"]["tag_every"]
    (old / "config.json").write_text(json.dumps(config))
    assert main(["compare-groupings", "--run", str(old), "--random-seeds", "1"]) == 0
    out = capsys.readouterr().out
    cg_old = json.loads((old / "groupings.json").read_text())
    assert "tag" not in cg_old["partitions"] and not (old / "baselines" / "tag").exists()
    assert {k: v["mean"] for k, v in cg_old["partitions"].items()} == \
        {k: v["mean"] for k, v in cg["partitions"].items() if k != "tag"}
    why = cg_old["skipped"]["tag"]
    assert "predates the TAG lookahead" in why and "policygradex run --family planted-toy --out NEW_DIR" in why
    assert f"tag                    skipped: {why}" in out
    assert f"- **tag** skipped: {why}" in (old / "groupings.md").read_text()
    assert studies.skipped_baselines(pipeline.reopen(d)) == {}

    # a second truth with another seed, and the ground truth's agreement with itself
    assert main(["ground-truth", "--run", str(d), "--total-steps", "1024", "--seed", "1"]) == 0
    assert main(["noise-ceiling", "--run", str(d)]) == 0
    nc = json.loads((d / "noise_ceiling.json").read_text())
    assert f"NMI {nc['nmi']:.3f}" in capsys.readouterr().out and nc["seeds"] == [0, 1]

    # report writes the report again from the finished artifacts.
    (d / "report.md").unlink()
    assert main(["report", "--run", str(d)]) == 0
    groups = json.loads((d / "groups.json").read_text())["groups"]
    assert f"groups: {groups}" in capsys.readouterr().out and (d / "report.md").is_file()


# ---- bad input: exit status 2, one line, nothing written ------------------------------------------------
def test_out_that_is_a_file_is_refused(tmp_path, capsys) -> None:
    target = tmp_path / "afile"
    target.write_text("mine")
    for command in (RUN, ["train", "--family", "planted-toy", "--preset", "smoke"]):
        assert main([*command, "--out", str(target)]) == 2
        assert "is a file; pass a directory for --out" in one_error_line(capsys.readouterr().err)
        assert target.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_corrupt_config_json_is_refused_by_run_and_train(tmp_path, capsys) -> None:
    d = tmp_path / "corrupt"
    d.mkdir()
    (d / "config.json").write_text("{not json")
    for command in (RUN, ["train", "--family", "planted-toy"]):
        assert main([*command, "--out", str(d)]) == 2
        assert "config.json' is corrupt (not valid JSON)" in one_error_line(capsys.readouterr().err)
        assert sorted(p.name for p in d.iterdir()) == ["config.json"]
        assert (d / "config.json").read_text() == "{not json"


def test_corrupt_config_json_is_refused_by_stage_commands(tmp_path) -> None:
    d = tmp_path / "corrupt"
    d.mkdir()
    (d / "config.json").write_text("{not json")
    code, _, err = run_cli("report", "--run", str(d))
    assert code == 2
    assert "config.json" in one_error_line(err)


@pytest.fixture(scope="module")
def wrong_shape_checkpoint(tmp_path_factory) -> Path:
    """A policygradex checkpoint whose first weight has the wrong shape for its recorded architecture."""
    from policygradex import tasks
    from policygradex.rl.checkpoint import save_checkpoint
    from policygradex.rl.policy import PolicyConfig, build_policy

    family = tasks.make("planted-toy")
    path = tmp_path_factory.mktemp("ckpt") / "policy.pt"
    save_checkpoint(path, build_policy(family.obs_dim, family.action_dim, True, PolicyConfig(), seed=0), family, [0])
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["actor.net.0.weight"] = torch.zeros(3, 3)
    torch.save(payload, path)
    return path


def test_checkpoint_of_the_wrong_shape_is_refused(tmp_path, wrong_shape_checkpoint) -> None:
    code, _, err = run_cli("evaluate", "--checkpoint", str(wrong_shape_checkpoint), "--episodes", "1",
                           "--out", str(tmp_path / "e.json"))
    assert code == 2
    line = one_error_line(err)
    assert "is damaged" in line and "size mismatch for actor.net.0.weight" in line
    assert not (tmp_path / "e.json").exists()
    out = tmp_path / "ft"
    code, _, err = run_cli("train", "--family", "planted-toy", "--total-steps", "3072", "--init",
                           str(wrong_shape_checkpoint), "--out", str(out))
    assert code == 2
    assert "is damaged" in one_error_line(err)
    assert not out.exists()


def test_ground_truth_refuses_zero_and_negative_budgets(tmp_path) -> None:
    from policygradex import pipeline, studies, tasks
    from policygradex.errors import PolicyGradExError

    d = tmp_path / "run"
    cfg = pipeline.RunConfig(preset="smoke", meta=pipeline.MetaConfig(total_steps=3072),
                             features=pipeline.FeatureConfig(samples_per_task=64, d=16))
    pipeline.run(tasks.make("planted-toy"), cfg, d, stop_after="subsets")

    class Started(Exception):
        pass

    def stop(stage, done, total):
        raise Started("fine-tuning started")  # under the bug: stop instead of fine-tuning every subset

    for budget in (-5, 0):
        with pytest.raises(PolicyGradExError, match="total_steps"):
            studies.ground_truth(pipeline.reopen(d), total_steps=budget, progress=stop)
        assert not (d / "ground_truth").exists(), budget


# ---- the README's command synopsis matches the commands --------------------------------------------------
def _readme_synopsis() -> dict[str, set[str]]:
    """{subcommand: options} from the README's "Command line" block."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Command line", 1)[1].split("```", 2)[1]
    out: dict[str, set[str]] = {}
    current: list[str] = []
    for line in block.splitlines():
        body = line.split("#", 1)[0]
        if body.startswith("policygradex "):
            current = body.split()[1].split("|")
            for c in current:
                out.setdefault(c, set())
        if current:
            for c in current:
                out[c] |= set(re.findall(r"--[a-z][a-z-]*", body))
    return out


def test_readme_synopsis_names_real_commands_and_options(capsys) -> None:
    synopsis = _readme_synopsis()
    assert set(synopsis) == set(TESTED)
    for command, options in synopsis.items():
        with pytest.raises(SystemExit) as e:
            main([command, "--help"])
        assert e.value.code == 0
        help_text = capsys.readouterr().out
        for option in options:
            assert re.search(rf"{re.escape(option)}\b", help_text), (command, option)
