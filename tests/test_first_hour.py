"""A user's first hour (issue 16): their own family from the command line (``module:factory`` and the
``policygradex.families`` entry point), logs that read cleanly in a file, a report that explains itself,
budgets that scale and file modes that follow the umask.

The user's family lives in ``tests/userfamily``: a package ``pgx_userfamily`` (three real CartPole-v1
tasks, one with a reversed actuator) and a ``dist-info`` that declares it as an installed package would.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import policygradex
from policygradex import tasks
from policygradex.cli import main
from policygradex.config import STAGES
from policygradex.console import _PlainProgress
from policygradex.report import affinity_separation, explain
from policygradex.rl.ppo import ppo_config_for

USERFAMILY = Path(__file__).parent / "userfamily"
SPEC = "pgx_userfamily:cartpoles"
RUN = ["run", "--preset", "smoke", "--k", "2"]


def _cli(args: list[str], log: Path, umask: int, cwd: Path, pythonpath: list[Path]) -> int:
    """The real command in a fresh process, stdout and stderr into ``log`` (as `make run > log 2>&1`)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(map(str, [Path(policygradex.__file__).parents[1], *pythonpath]))
    with open(log, "w") as f:
        p = subprocess.run([sys.executable, "-m", "policygradex.cli", *args], stdout=f, stderr=subprocess.STDOUT,
                           cwd=cwd, env=env, timeout=600, preexec_fn=lambda: os.umask(umask))
    return p.returncode


def _factory_run(tmp: Path, *options: str) -> tuple[Path, Path, Path, int, int]:
    """`policygradex run --family pgx_userfamily:cartpoles` from the package's folder (not on PYTHONPATH),
    twice, logs redirected to files."""
    out = tmp / "run"
    args = [*RUN, "--family", SPEC, "--out", str(out), *options]
    first, second = tmp / "first.log", tmp / "second.log"
    rc1 = _cli(args, first, 0o022, USERFAMILY, [])
    rc2 = _cli(args, second, 0o022, USERFAMILY, [])
    return out, first, second, rc1, rc2


@pytest.fixture(scope="module")
def factory_run(tmp_path_factory) -> tuple[Path, Path, Path, int, int]:
    return _factory_run(tmp_path_factory.mktemp("first_hour"))


def _check_factory_run(out: Path, first: Path, rc: int, executor: str) -> None:
    assert rc == 0, first.read_text()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["family"]["factory"] == SPEC and cfg["family"]["name"] == "user-cartpoles"
    assert cfg["executor"] == executor
    res = json.loads((out / "results.json").read_text())
    assert res["family"] == "user-cartpoles-v1"
    assert sorted(i for g in res["groups"] for i in g) == [0, 1, 2] and len(res["groups"]) == 2
    assert len((out / "scores.jsonl").read_text().splitlines()) > 0


def test_module_factory_family_runs_end_to_end(factory_run):
    out, first, _, rc, _ = factory_run
    _check_factory_run(out, first, rc, "serial")


def _family_size(ref: str, shared: None) -> tuple[int, str]:
    family = tasks.resolve(ref)
    return family.n, family.ref


def test_worker_process_rebuilds_a_factory_family_from_its_ref(monkeypatch):
    """What score and group jobs do: a spawned process (nothing registered, the package found through the
    parent's path) rebuilds the family from the string the jobs carry."""
    from policygradex.execute import ProcessExecutor
    from policygradex.pipeline import Run, job_family

    monkeypatch.syspath_prepend(str(USERFAMILY))
    family = tasks.make(SPEC)
    assert family.ref == SPEC and family.name == "user-cartpoles"
    run = Run(family, None, None)  # type: ignore[arg-type]  # job_family reads only the family here
    assert job_family(run, "serial") is family
    # A family that pickles travels by value (issue 15); one that does not, by the string that rebuilds it.
    assert job_family(run, "process") == family
    closure = dataclasses.replace(family, make_env_fn=lambda fam, i: family.make_env_fn(fam, i))
    assert job_family(Run(closure, None, None), "process") == SPEC  # type: ignore[arg-type]
    assert list(ProcessExecutor(1).map(_family_size, [SPEC], None)) == [(3, SPEC)]


@pytest.mark.slow
def test_module_factory_family_runs_with_worker_processes(tmp_path):
    out, first, second, rc, rc2 = _factory_run(tmp_path, "--executor", "process", "--workers", "2")
    _check_factory_run(out, first, rc, "process")
    assert rc2 == 0 and "groups: skipped: outputs exist" in second.read_text()


def test_log_in_a_file_reads_cleanly_and_ends_with_the_summary(factory_run):
    out, first, _, _, _ = factory_run
    text = first.read_text()
    assert "\x1b" not in text and "\r" not in text, "escape codes or carriage returns in a log file"
    assert "it/s" not in text  # tqdm's rates are for terminals
    lines = text.splitlines()
    for stage in STAGES:
        assert f"{stage}: started" in lines, stage
        assert any(re.fullmatch(rf"{stage}: done in \d+\.\d s", ln) for ln in lines), stage
    # progress lines: each printed once, never a repeated 0%
    progress = [ln for ln in lines if re.match(r"\w+: \d+/\d+ \(\d+%\)", ln)]
    assert progress and len(progress) == len(set(progress)) and not any("(0%)" in ln for ln in progress)
    tail = lines[lines.index("summary:"):]
    assert tail[1].startswith("  groups: [[") and "mean return: theta* alone" in tail[2] and "->" in tail[2]
    assert tail[3].startswith("  total time:") and tail[4] == f"  report: {out / 'report.md'} and {out / 'report.html'}"


def test_second_run_reports_every_stage_skipped(factory_run):
    _, _, second, _, rc = factory_run
    assert rc == 0
    lines = second.read_text().splitlines()
    assert [ln for ln in lines if ln.endswith("skipped: outputs exist")] == [
        f"{s}: skipped: outputs exist" for s in STAGES]
    assert not any(ln.endswith(": started") for ln in lines) and "summary:" in lines


def test_files_follow_the_umask(factory_run, tmp_path):
    out, _, _, _, _ = factory_run
    files = [p for p in out.rglob("*") if p.is_file()]
    dirs = [p for p in out.rglob("*") if p.is_dir()]
    assert len(files) > 20
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {"0o644"}
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in dirs} == {"0o755"}
    # the report again, from a fresh process that finds the family by the factory in config.json, umask 077
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    rc = _cli(["report", "--run", str(copy)], tmp_path / "report.log", 0o077, tmp_path, [USERFAMILY])
    assert rc == 0, (tmp_path / "report.log").read_text()
    assert stat.S_IMODE((copy / "report.html").stat().st_mode) == 0o600


def test_report_explains_itself_in_markdown_and_html(factory_run):
    out, _, _, _, _ = factory_run
    res = json.loads((out / "results.json").read_text())
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    summary = res["summary"]
    assert summary[0].startswith("3 tasks formed 2 groups") and any("affinity" in s for s in summary)
    for sentence in summary:
        assert f"- {sentence}" in md
        assert html.escape(sentence) in page
    for figure in ("affinity", "tasks", "curves"):
        assert f"figures/{figure}.png" in md and (out / "figures" / f"{figure}.png").is_file()
    assert page.count('src="data:image/png;base64,') == 3 and 'src="figures/' not in page  # opens offline
    assert "## Budgets and seeds" in md and "12,288 env steps" in md  # 4,096 × 3
    timings = md.split("## Timings\n")[1]
    assert re.search(r"\| meta \| \d+\.\d s \|", timings) and "| group 1 |" in timings


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_report_html_renders_in_headless_chromium(factory_run, tmp_path):
    out, _, _, _, _ = factory_run
    shot = tmp_path / "report.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1000,2400", f"file://{out / 'report.html'}"], capture_output=True, timeout=120)
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape == (2400, 1000)
    assert img.std() > 20  # text and figures, not a blank page


def test_entry_point_family_is_listed_and_runs_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(USERFAMILY))
    assert main(["families"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("user-cartpoles-ep "))
    assert "n=3" in line and "CartPole-v1" in line and line.endswith("[entry point of pgx-userfamily 0.1]")
    assert tasks.origin_of("cartpole-10") == "built-in"
    out = tmp_path / "ep"
    assert main([*RUN, "--family", "user-cartpoles-ep", "--out", str(out), "--log-format", "plain"]) == 0
    printed = capsys.readouterr().out
    assert "report: done in" in printed and "summary:" in printed
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["family"]["name"] == "user-cartpoles-ep" and cfg["family"]["factory"] is None  # found by name
    assert json.loads((out / "results.json").read_text())["family"] == "user-cartpoles-ep-v1"


BAD_FACTORIES = [
    ("nosuchmodule_pgx:make", "no module named 'nosuchmodule_pgx'"),
    ("pgx_userfamily:nope", "has no attribute 'nope'"),
    ("pgx_userfamily:NOT_CALLABLE", "'NOT_CALLABLE' is a int, not a callable"),
    ("pgx_userfamily:wrong_type", "wrong_type() returned a str, not a TaskFamily"),
    ("pgx_userfamily:broken", "calling broken() failed (RuntimeError: the simulator is not installed)"),
    ("pgx_userfamily:", "neither a registered name nor of the form package.module:factory"),
    ("pgx_userfamily:clash", "builds a family named 'cartpole-10', the name of a built-in family"),
]


@pytest.mark.parametrize(("spec", "expected"), BAD_FACTORIES, ids=[s for s, _ in BAD_FACTORIES])
def test_bad_factory_is_one_line_before_any_work(spec, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(USERFAMILY))
    monkeypatch.chdir(tmp_path)
    code = main(["run", "--family", spec, "--out", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: family ") and "Traceback" not in lines[0]
    assert spec in lines[0] and expected in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []


def test_budget_rule_for_families_without_budgets():
    fam = tasks.from_gymnasium("CartPole-v1", params=[{}, {}, {}], name="rule")
    assert ppo_config_for(fam, "smoke").total_steps == 8 * 4 * 128 * 3  # 8 PPO iterations
    assert ppo_config_for(fam, "default").total_steps == 300_000 == ppo_config_for(fam, "meta").total_steps
    own = tasks.from_gymnasium("CartPole-v1", params=[{}], name="own", train_steps={"smoke": 2048})
    assert ppo_config_for(own, "smoke").total_steps == 2048 and ppo_config_for(own, "default").total_steps == 100_000
    with pytest.raises(policygradex.errors.ConfigError, match="unknown preset 'quick'"):
        tasks.from_gymnasium("CartPole-v1", params=[{}], name="bad", train_steps={"quick": 10})


def test_plain_progress_prints_each_tenth_once(capsys):
    import io

    buf = io.StringIO()
    line = _PlainProgress("meta", 1, 78, buf)
    for it in range(2, 79):
        line.update(it, 78)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("meta: 78/78 (100%) after")
    assert [int(re.search(r"\((\d+)%\)", ln).group(1)) // 10 for ln in lines] == list(range(1, 11))


def test_summary_in_words_known_answer():
    U = np.array([[0, 2, -1, -1], [2, 0, -1, -1], [-1, -1, 0, 0.5], [-1, -1, 0.5, 0]], dtype=float)
    results = {
        "groups": [[0, 1], [2], [3]], "metric": "return", "planted_groups": None, "no_signal_tasks": [3],
        "tasks": [
            {"index": 0, "name": "a", "group": 0, "meta": 100.0, "group_policy": 150.0},
            {"index": 1, "name": "b", "group": 0, "meta": 100.0, "group_policy": 101.0},
            {"index": 2, "name": "c", "group": 1, "meta": 50.0, "group_policy": 20.0},
            {"index": 3, "name": "d", "group": 2, "meta": 10.0, "group_policy": 30.0},
        ],
    }
    results["mean_meta"] = 65.0
    results["mean_group_policy"] = 75.25
    text = explain(results, U)
    assert text[0] == "4 tasks formed 3 groups: group 0: 0 (a), 1 (b); group 1: 2 (c); group 2: 3 (d)."
    assert "raised the mean return from 65.00 (θ* alone) to 75.25 (+10.25)" in text[1]
    assert text[2] == "2 task(s) gained: 0 (a) +50.00, 3 (d) +20.00; 1 lost: 2 (c) -30.00; 1 stayed within ±3.00 of θ*."
    assert "group 1 (2) ended below θ* alone on its own tasks (20.00 vs 50.00)" in text[3]
    assert "group 2 is task 3 (d) alone and reached 30.00, below θ*'s mean over all tasks (65.00)" in text[3]
    sep = affinity_separation(U, results["groups"])
    assert sep is not None and sep["within"] == 2.0 and sep["between"] == pytest.approx(-0.7)  # 8 pairs at −1, 2 at 0.5
    assert "clearly separates" in text[4] and "no information" in text[5] and "3 (d)" in text[5]
