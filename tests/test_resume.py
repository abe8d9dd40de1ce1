"""Interrupt a CLI run with SIGINT, resume it, and get the uninterrupted run's bytes."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

ENV = dict(os.environ, JAX_PLATFORMS="cpu")
pytestmark = pytest.mark.slow  # every test runs the command line in a subprocess


@pytest.fixture(scope="module")
def png(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "im.png"
    Image.fromarray((smooth_image(32, 32) * 255).astype(np.uint8)).save(path)
    return path


def args(png, out, iters=30, seeds=1):
    return [
        sys.executable,
        "-m",
        "dipjax.fit",
        "--task",
        "denoise",
        "--image",
        str(png),
        "--degrade",
        "--iters",
        str(iters),
        "--checkpoint-every",
        "10",
        "--chunk",
        "1",
        "--seed",
        "5",
        "--seeds",
        str(seeds),
        "--sgld",
        "--quiet",
        "--out",
        str(out),
    ]


# SGLD is on (its noise and running posterior moments are part of the state). With one seed:
# interrupted after the first periodic checkpoint. With four: after the first seed finished (its
# result kept in the checkpoint) and while the others run.
CASES = {
    1: (
        "checkpoint/state/*",
        (
            "output.png",
            "output_avg.png",
            "metrics.jsonl",
            "posterior_mean.npy",
            "posterior_std.npy",
        ),
    ),
    4: (
        "checkpoint/done/*.json",
        (
            "mean.png",
            "std.npy",
            "seed_5/output.png",
            "seed_5/posterior_std.npy",
            "seed_8/posterior_mean.npy",
            "seed_6/metrics.jsonl",
            "seed_8/output_avg.png",
            "seed_8/metrics.jsonl",
            "metrics.csv",
        ),
    ),
}


@pytest.mark.parametrize("seeds, sig", [(1, signal.SIGTERM), (4, signal.SIGINT)])
def test_interrupt_then_resume_is_bit_identical(png, tmp_path, seeds, sig):
    wait_for, compare = CASES[seeds]
    iters = 30 if seeds == 1 else 40
    full = subprocess.run(
        args(png, tmp_path / "full", iters, seeds),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert full.returncode == 0, full.stderr
    assert not (tmp_path / "full" / "checkpoint").exists()

    out = tmp_path / "cut"
    proc = subprocess.Popen(
        args(png, out, iters, seeds), env=ENV, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 300
    while not list(out.glob(wait_for)) and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    done = sum(f["iters_done"] for f in summary["fits"])
    assert 10 <= done < iters * seeds
    first = out if seeds == 1 else out / "seed_5"
    assert (first / "output.png").is_file()

    resumed = subprocess.run(
        [sys.executable, "-m", "dipjax.fit", "--resume", str(out), "--quiet"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    for name in compare:
        assert (out / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
    assert not (out / "checkpoint").exists()


def test_resume_refuses_flags_that_would_change_the_run(tmp_path):
    (tmp_path / "run.json").write_text('{"task": "denoise", "iters": 10}')
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dipjax.fit",
            "--resume",
            str(tmp_path),
            "--iters",
            "30",
            "--task",
            "inpaint",
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "--task, --iters cannot change them" in r.stderr


def test_a_folder_left_with_only_its_record_can_be_rerun(png, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "run.json").write_text("{}")  # a run that died before writing anything
    r = subprocess.run(
        args(png, out, iters=1), env=ENV, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "run.json").read_text())["iters"] == 1


def test_a_second_process_on_the_same_folder_is_refused(png, tmp_path):
    from dipjax import runfolder

    out = tmp_path / "busy"
    out.mkdir()
    runfolder.lock(out)  # this test process holds the folder
    try:
        r = subprocess.run(
            args(png, out, iters=1), env=ENV, capture_output=True, text=True, timeout=600
        )
    finally:
        runfolder.release()
    assert r.returncode == 2 and "another dipjax run is writing there now" in r.stderr


def test_resume_of_a_folder_without_run_is_an_error(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "dipjax.fit", "--resume", str(tmp_path)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "no run.json" in r.stderr


def test_overwrite_clears_the_old_runs_checkpoint(png, tmp_path):
    out = tmp_path / "o"
    (out / "checkpoint" / "done").mkdir(parents=True)
    (out / "checkpoint" / "done" / "p0_s0.json").write_text("{}")
    (out / "run.json").write_text("{}")
    (out / "keep.txt").write_text("not ours")
    r = subprocess.run(
        args(png, out, iters=2) + ["--overwrite"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert not (out / "checkpoint").exists() and (out / "keep.txt").is_file()
    r = subprocess.run(
        [sys.executable, "-m", "dipjax.fit", "--resume", str(out)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "no checkpoint there" in r.stderr


def test_overwrite_clears_a_distributed_runs_parts_and_checkpoints(tmp_path):
    from dipjax import runfolder

    names = ["metrics.process1.json", "summary.process0.json", "checkpoint.process1/done/x.json"]
    for name in [*names, "keep.txt", "notes/metrics.process-list.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    runfolder.clear_run(tmp_path)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["keep.txt", "notes/metrics.process-list.txt"]
