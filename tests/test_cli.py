"""The command line, run as a user would: in a subprocess."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

ENV = dict(os.environ, JAX_PLATFORMS="cpu")


def cli(*args, timeout=600):
    if "--help" not in args and "--chunk" not in args:
        args = (*args, "--chunk", 1)
    return subprocess.run([sys.executable, "-m", "dipjax.fit", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=ENV)


@pytest.fixture(scope="module")
def small_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "small.png"
    Image.fromarray((smooth_image(64, 64) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, small_png):
    out = tmp_path_factory.mktemp("run") / "out"
    r = cli("--task", "denoise", "--image", small_png, "--degrade", "--iters", 10,
            "--save-every", 5, "--out", out, "--seed", 1)
    assert r.returncode == 0, r.stderr
    return out, r


def test_cli_writes_every_output(run_dir):
    out, r = run_dir
    for name in ("output.png", "output_avg.png", "degraded.png", "comparison.png",
                 "curves.png", "metrics.jsonl", "summary.json", "snapshots/iter_000005.png"):
        assert (out / name).is_file(), name
    assert "no accelerator found" in r.stderr and "--preset denoise" in r.stderr
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 10 and json.loads(lines[-1])["iter"] == 10
    assert np.asarray(Image.open(out / "output.png")).shape == (64, 64, 3)


def test_summary_fields(run_dir):
    s = json.loads((run_dir[0] / "summary.json").read_text())
    for key in ("task", "preset", "hyperparameters", "seed", "versions", "device", "compile_s",
                "step_s", "final"):
        assert key in s, key
    assert s["task"] == "denoise" and s["preset"] == "denoise-fast" and s["seed"] == 1
    assert s["hyperparameters"]["iters"] == 10 and s["hyperparameters"]["sigma"] == 25.0
    assert s["hyperparameters"]["net"]["constructor"] == "skip"
    assert s["versions"]["jax"] and s["device"]["platform"] == "cpu"
    assert s["compile_s"] > 0 and s["step_s"] > 0
    assert {"psnr_gt", "psnr_gt_avg", "psnr_baseline", "ssim"} <= set(s["final"])


def test_same_seed_same_bytes(run_dir, small_png, tmp_path):
    r = cli("--task", "denoise", "--image", small_png, "--degrade", "--iters", 10,
            "--save-every", 5, "--out", tmp_path / "again", "--seed", 1, "--quiet")
    assert r.returncode == 0, r.stderr
    for name in ("output.png", "output_avg.png", "degraded.png", "metrics.jsonl"):
        assert (tmp_path / "again" / name).read_bytes() == (run_dir[0] / name).read_bytes()


def test_existing_output_folder_is_refused(run_dir, small_png):
    r = cli("--task", "denoise", "--image", small_png, "--out", run_dir[0], "--iters", 1)
    assert r.returncode == 2
    assert "not empty" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--task", "denoise", "--scale", "4"], "--scale does not apply to --task denoise"),
    (["--task", "denoise", "--iters", "0"], "--iters 0: must be > 0"),
    (["--task", "denoise", "--sigma", "-3"], "--sigma -3.0: must be >= 0"),
    (["--task", "denoise", "--image", "/nonexistent.png"], "/nonexistent.png: no such file"),
    (["--preset", "superres-x4", "--task", "denoise"], "is for --task superres"),
    (["--task", "inpaint", "--image", "IMG", "--mask", "MASK"], "differs from the image"),
    (["--task", "denoise", "--image", "TEXT"], "not an image"),
    (["--task", "denoise", "--image", "TINY", "--preset", "denoise"],
     "fails at this size; it needs sides that are multiples of 64"),
    (["--task", "denoise", "--image", "IMG", "--out-in-file"], "cannot write there"),
])
def test_bad_input_is_one_line_and_status_2(args, message, small_png, tmp_path):
    mask = tmp_path / "mask.png"
    Image.fromarray(np.full((32, 40), 255, np.uint8)).save(mask)
    (tmp_path / "text.png").write_text("not a picture")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "tiny.png")
    subst = {"IMG": small_png, "MASK": mask, "TEXT": tmp_path / "text.png",
             "TINY": tmp_path / "tiny.png"}
    out = tmp_path / "o"
    if "--out-in-file" in args:
        args.remove("--out-in-file")
        out = tmp_path / "text.png" / "o"
    args = [str(subst.get(a, a)) for a in args]
    r = cli(*args, "--out", out)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_unknown_preset_is_rejected():
    r = cli("--preset", "nope")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_help_lists_every_flag():
    r = cli("--help")
    assert r.returncode == 0
    for flag in ("--task", "--preset", "--image", "--mask", "--gt", "--degrade", "--scale",
                 "--sigma", "--iters", "--lr", "--seed", "--out", "--save-every", "--quiet"):
        assert flag in r.stdout
    assert "default" in r.stdout


def test_seed_ensemble_outputs(small_png, tmp_path):
    out = tmp_path / "ens"
    r = cli("--task", "denoise", "--image", small_png, "--degrade", "--iters", 4, "--seeds", 2,
            "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    for name in ("seed_0/output.png", "seed_1/output.png", "mean.png", "std.png", "std.npy",
                 "metrics.jsonl", "summary.json"):
        assert (out / name).is_file(), name
    std = np.load(out / "std.npy")
    assert std.shape == (64, 64, 3) and std.max() > 0
    s = json.loads((out / "summary.json").read_text())
    assert s["seeds"] == [0, 1] and "psnr_mean" in s["final"]
