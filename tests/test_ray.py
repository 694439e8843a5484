"""The ray executor on a real local Ray (issue 15): the same artifacts as the serial and process executors,
workers killed mid-stage, failing items, cancellation, and a local Ray that stays private.

Slow tier (`make test-slow`): a local Ray takes seconds to start, and each run is repeated per executor.
Ray is part of the `all` extra that CI installs, so these tests fail rather than skip without it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from executor_runs import (
    assert_same_artifacts,
    assert_same_truth,
    cartpole_config,
    custom_config,
    custom_family,
    run_with_truth,
)

from policygradex import execute, pipeline, studies, tasks
from policygradex.errors import ConfigError, PolicyGradExError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """One local Ray with 2 CPUs for the module, started as the ray executor starts it; afterwards nothing
    of Ray is left in the home directory or the temporary directory."""
    import ray

    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        assert execute.start_ray(None, cpus=2)
        temp_dir = Path(execute._session[-1].temp_dir)
        # functions of this module run in the workers, which cannot import it: send them by value
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        yield ray
        execute.shutdown_ray()
    assert not ray.is_initialized()
    assert not temp_dir.exists()
    written = [p for p in home.rglob("*") if p.is_file() and "matplotlib" not in p.parts]  # (the report's figures)
    assert written == [], written


def test_the_local_ray_is_sized_and_private(local_ray):
    ray = local_ray
    assert ray.cluster_resources()["CPU"] == 2
    assert [n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]] == ["127.0.0.1"]
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    assert Path(execute._session[-1].temp_dir).name.startswith("pgx-ray-")
    assert not execute.start_ray(None, cpus=1)  # an existing connection is reused, not replaced
    assert ray.cluster_resources()["CPU"] == 2


def test_cartpole10_smoke_gives_the_same_artifacts_on_every_executor(local_ray, tmp_path):
    """cartpole-10, smoke preset (4 evaluation episodes per score, 12 subsets): affinity, groups, group
    policies and the ground truth are identical with serial, process and ray."""
    family = tasks.make("cartpole-10")
    est = pipeline.EstimateConfig(score="rollout", episodes=4, num_subsets=12, min_coverage=1)
    for executor in ("serial", "process", "ray"):
        cfg = cartpole_config(executor=executor, workers=2, estimate=est)
        run_with_truth(family, cfg, tmp_path / executor)
    for executor in ("process", "ray"):
        assert_same_artifacts(tmp_path / "serial", tmp_path / executor)


@pytest.fixture(scope="module")
def custom_serial(tmp_path_factory):
    """The custom family's run and ground truth on the serial executor: the reference."""
    d = tmp_path_factory.mktemp("custom") / "serial"
    run_with_truth(custom_family(), custom_config(), d)
    return d


@pytest.mark.parametrize("executor", ["process", "ray"])
def test_a_family_in_no_registry_gives_the_same_artifacts(local_ray, custom_serial, tmp_path, executor):
    """Built with from_gymnasium in this process only: workers get it by value (issue 15, item 2)."""
    family = custom_family()
    assert family.name not in tasks.names()
    run_with_truth(family, custom_config(executor=executor, workers=2), tmp_path / executor)
    assert_same_artifacts(custom_serial, tmp_path / executor)


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False


class KillOnce(threading.Thread):
    """SIGKILLs, once per task name, the first Ray worker of this process seen running that task (Ray
    titles a busy worker ``ray::<task name>``), i.e. a worker in the middle of a work item."""

    def __init__(self, names: set[str]) -> None:
        super().__init__(daemon=True)
        self.names = names
        self.killed: dict[str, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self.stop.is_set() and len(self.killed) < len(self.names):
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode().strip()
                except OSError:
                    continue
                name = title.removeprefix("ray::")
                if title.startswith("ray::") and name in self.names and name not in self.killed \
                        and _descends_from(int(proc.name), me):
                    os.kill(int(proc.name), signal.SIGKILL)
                    self.killed[name] = int(proc.name)
            time.sleep(0.02)


def test_workers_killed_mid_stage_are_replaced_and_the_run_is_unchanged(local_ray, custom_serial, tmp_path):
    """One worker SIGKILLed in the middle of an item of each parallel stage (scoring, group training,
    ground truth): Ray reruns the item on a new worker and every artifact is the serial run's."""
    killer = KillOnce({"score_chunk", "train_group", "fine_tune_and_score"})
    killer.start()
    try:
        run_with_truth(custom_family(), custom_config(executor="ray", workers=2), tmp_path / "ray")
    finally:
        killer.stop.set()
        killer.join()
    assert set(killer.killed) == {"score_chunk", "train_group", "fine_tune_and_score"}
    assert_same_artifacts(custom_serial, tmp_path / "ray")


def _bad_or_slow(item: int, shared: None) -> int:
    if item == 1:
        raise ConfigError(f"subset {item} is bad; pass another")
    time.sleep(60)
    return item


def test_an_item_with_bad_input_fails_the_stage_at_once_with_its_message(local_ray):
    start = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        list(execute.RayExecutor(2).map(_bad_or_slow, [0, 1, 2, 3], None))
    assert str(e.value) == "subset 1 is bad; pass another"  # the item's own line, no remote traceback
    assert time.perf_counter() - start < 30  # not after item 0's minute, and no hang


def _mark_later(item: int, folder: str) -> int:
    if item:  # long enough that a loaded machine cannot finish an item between `next` and `close` below
        time.sleep(10)
        Path(folder, str(item)).write_text("done")
    return item


def test_closing_the_results_cancels_the_outstanding_items(local_ray, tmp_path):
    """What Ctrl-C or an error in the caller does: the items still running or queued are cancelled."""
    results = execute.RayExecutor(2).map(_mark_later, [0, 1, 2, 3, 4], str(tmp_path))
    assert next(results) == 0  # item 1 is running beside it by now, or about to
    results.close()
    time.sleep(14)  # an item that was not cancelled has written its file by now
    assert list(tmp_path.iterdir()) == []
    assert list(execute.RayExecutor(2).map(_mark_later, [0], str(tmp_path))) == [0]  # Ray still serves


def _die(item: int, shared: None) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return item


def test_a_worker_that_keeps_dying_fails_the_stage_with_one_line(local_ray):
    with pytest.raises(PolicyGradExError) as e:
        list(execute.RayExecutor(2, max_retries=1).map(_die, [7], None))
    msg = str(e.value)
    assert msg.startswith("work item 0 failed after 1 reruns: ") and msg.endswith("check the Ray nodes' memory and logs")
    assert "\n" not in msg


def test_a_local_ray_too_small_for_an_item_is_refused(local_ray):
    with pytest.raises(ConfigError, match="asks for 1 CPU and 1 GPU, but the local Ray has 2 CPU and 0 GPU"):
        list(execute.RayExecutor(2, gpus_per_item=1).map(_mark_later, [0], "."))


def _left_in(tmp: Path) -> list[Path]:
    """What a command left in its temporary directory, but torch's compile cache (torch's, not Ray's)."""
    return [p for p in tmp.iterdir() if not p.name.startswith("torchinductor_")]


def test_the_cli_joins_a_running_ray_and_starts_none_itself(local_ray, tmp_path):
    """`--ray-address` joins the cluster (here: this test's local Ray, by its GCS address); the command
    writes nothing to its home or temporary directory and leaves the cluster running."""
    address = local_ray.get_runtime_context().gcs_address
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "PYTHONPATH": os.pathsep.join(sys.path)}
    out = tmp_path / "run"
    p = subprocess.run(
        [sys.executable, "-m", "policygradex.cli", "run", "--family", "planted-toy", "--preset", "smoke",
         "--executor", "ray", "--ray-address", address, "--out", str(out), "--stop-after", "estimate"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert p.returncode == 0, p.stderr
    assert (out / "scores.jsonl").is_file()
    assert list(home.iterdir()) == [] and _left_in(tmp) == []
    assert local_ray.cluster_resources()["CPU"] == 2  # still up
    p = subprocess.run(
        [sys.executable, "-m", "policygradex.cli", "estimate", "--run", str(out), "--ray-address", "127.0.0.1:1"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert p.returncode == 2
    assert p.stderr.startswith("error: cannot join the Ray cluster at --ray-address '127.0.0.1:1' (")
    assert p.stderr.strip().endswith("start one with `ray start --head` or check the address")


def test_the_cli_starts_a_local_ray_and_cleans_up(tmp_path):
    """`--executor ray` without an address: a local Ray for the command, stopped at its end, with
    nothing left in the home or temporary directory."""
    home = tmp_path / "home"
    home.mkdir()
    tmp = Path(tempfile.mkdtemp(prefix="pgx-test-", dir="/tmp"))  # short: Ray's socket paths live under it
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "PYTHONPATH": os.pathsep.join(sys.path)}
    out = tmp_path / "run"
    p = subprocess.run(
        [sys.executable, "-m", "policygradex.cli", "run", "--family", "planted-toy", "--preset", "smoke",
         "--executor", "ray", "--workers", "2", "--out", str(out), "--stop-after", "estimate"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    left = _left_in(tmp)
    shutil.rmtree(tmp)
    assert p.returncode == 0, p.stderr
    assert (out / "scores.jsonl").is_file()
    assert list(home.iterdir()) == [] and left == []


def test_ground_truth_on_ray_resumes_a_partial_run_of_another_executor(local_ray, custom_serial, tmp_path):
    """Subsets fine-tuned serially before a stop are kept; Ray fine-tunes the rest (the results do not
    depend on the executor)."""
    import shutil

    d = tmp_path / "run"
    shutil.copytree(custom_serial, d)
    records = sorted((d / "ground_truth" / "subsets").glob("*.json"))
    for f in records[1:]:
        f.unlink()
    for name in ("scores.jsonl", "groups.json", "affinity.npy"):
        (d / "ground_truth" / name).unlink()
    run = pipeline.open_run(custom_family(), custom_config(), d)
    size = max(len(s) for s in run.store.load_subsets())
    studies.ground_truth(run, total_steps=run.config.meta.ppo.batch_size(size), executor="ray")
    assert_same_truth(custom_serial, d)


def test_ctrl_c_stops_the_stage_and_frees_the_cluster(local_ray, tmp_path):
    """SIGINT in the middle of the ground truth on a cluster: exit 130 with the resume hint, the items of
    the stage cancelled (the cluster's CPUs free again), and a rerun finishes the stage."""
    address = local_ray.get_runtime_context().gcs_address
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = tmp_path / "run"
    cli = [sys.executable, "-m", "policygradex.cli"]
    p = subprocess.run([*cli, "run", "--family", "planted-toy", "--preset", "smoke", "--executor", "ray",
                        "--ray-address", address, "--out", str(out), "--stop-after", "estimate"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    gt = [*cli, "ground-truth", "--run", str(out), "--ray-address", address]
    proc = subprocess.Popen(gt, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while local_ray.available_resources().get("CPU", 0) > 0:  # both CPUs busy with its items
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted; rerun the same command to resume"
    deadline = time.monotonic() + 30
    while local_ray.available_resources().get("CPU", 0) < 2:
        assert time.monotonic() < deadline, "the stage's items still hold the cluster's CPUs"
        time.sleep(0.2)
    done = len(list((out / "ground_truth" / "subsets").glob("*.json")))
    p = subprocess.run(gt, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "true groups:" in p.stdout
    assert len(list((out / "ground_truth" / "subsets").glob("*.json"))) > done
