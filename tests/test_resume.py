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


@pytest.fixture(scope="module")
def png(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "im.png"
    Image.fromarray((smooth_image(32, 32) * 255).astype(np.uint8)).save(path)
    return path


def args(png, out, iters=30):
    return [sys.executable, "-m", "dipjax.fit", "--task", "denoise", "--image", str(png),
            "--degrade", "--iters", str(iters), "--checkpoint-every", "10", "--chunk", "1",
            "--seed", "5", "--quiet", "--out", str(out)]


def test_sigint_then_resume_is_bit_identical(png, tmp_path):
    full = subprocess.run(args(png, tmp_path / "full"), env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert full.returncode == 0, full.stderr

    out = tmp_path / "cut"
    proc = subprocess.Popen(args(png, out), env=ENV, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list((out / "checkpoint").glob("step_*")) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    done = len((out / "metrics.jsonl").read_text().splitlines())
    assert 10 <= done < 30
    assert (out / "output.png").is_file()
    assert json.loads((out / "summary.json").read_text())["interrupted"] is True

    resumed = subprocess.run([sys.executable, "-m", "dipjax.fit", "--resume", str(out),
                              "--quiet"], env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    for name in ("output.png", "output_avg.png", "metrics.jsonl"):
        assert (out / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name


def test_resume_of_a_folder_without_run_is_an_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "dipjax.fit", "--resume", str(tmp_path)],
                       env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no run.json" in r.stderr
