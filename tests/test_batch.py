"""Many fits at once: shape groups, vmapped batches, memory splits, sharding, many-image CLI
runs and two-process distributed runs."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import smooth_image, tiny_preset

from dipjax import api, memory, plan, run
from dipjax.engine import fit_problem
from dipjax.io import save_png

# A small learning rate keeps vmapped and separate fits within float noise of each other
# (tests/test_ensemble.py explains why Adam amplifies reassociation at lr 1e-2).
P = tiny_preset("denoise", iters=2, reg_noise_std=1 / 30, lr=1e-5)
ENV = dict(os.environ, JAX_PLATFORMS="cpu")


def _problems():
    images = [
        smooth_image(32, 32, seed=1),
        smooth_image(16, 24, seed=2),
        smooth_image(32, 32, seed=3),
    ]
    return [api.prepare("denoise", P, im, degrade=True, seed=0) for im in images]


def test_groups_are_by_shape_in_order_of_appearance():
    probs = _problems()
    assert plan.group_problems(probs) == [[0, 2], [1]]
    inpaint = tiny_preset("inpaint", mask_kind="rect")
    masked = api.prepare("inpaint", inpaint, smooth_image(32, 32), degrade=True)
    assert plan.group_problems(probs + [masked]) == [[0, 2], [1], [3]]


@pytest.mark.slow
def test_vmapped_groups_equal_separate_fits_and_batches_split():
    probs = _problems()
    rep = run(probs, P, [5], strategy="vmap", chunk=2)
    fits = rep.fits
    assert rep.groups == [[0, 2], [1]] and rep.batches == [[2], [1]]
    assert [(f.index, f.seed) for f in fits] == [(0, 5), (1, 5), (2, 5)]
    assert all(len(f.history) == 2 and f.history[-1]["iter"] == 2 for f in fits)
    single = fit_problem(probs[2], P, seed=5, chunk=2)  # the second fit of a vmapped pair
    np.testing.assert_allclose(fits[2].output, single.output, atol=1e-4)
    assert fits[2].final["psnr_gt"] == pytest.approx(single.final["psnr_gt"], abs=1e-3)
    rep2 = run([probs[0], probs[2]], P, [5], strategy="vmap", chunk=2, max_batch=1)
    split = rep2.fits
    assert rep2.batches == [[1, 1]] and rep2.notes == [
        "2 fits of size 32x32 run in 2 batches of up to 1 (--max-batch)"
    ]
    np.testing.assert_allclose(split[0].output, fits[0].output, atol=1e-4)
    np.testing.assert_allclose(split[1].output, single.output, atol=1e-4)


@pytest.mark.slow
def test_memory_estimate_sets_the_batch_size(monkeypatch):
    probs = _problems()[:1]
    from dipjax import build

    net, z, _ = build.problem_arrays(probs[0], P, 0)
    per_fit = memory.estimate_bytes(net, z.shape)
    monkeypatch.setattr(memory, "device_bytes", lambda: int(2.5 * per_fit))
    rep = run(probs, P.replace(iters=1), [0, 1, 2, 3, 4], strategy="vmap", chunk=1)
    assert rep.batches == [[2, 2, 1]]
    assert "memory estimate" in rep.notes[0]


SHARDED = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    sys.path.insert(0, sys.argv[1])
    import jax, numpy as np
    from conftest import smooth_image, tiny_preset
    from dipjax import api, run
    assert len(jax.devices()) == 4
    p = tiny_preset("denoise", iters=2, reg_noise_std=1 / 30, lr=1e-5)
    probs = [api.prepare("denoise", p, smooth_image(32, 32, seed=s), degrade=True)
             for s in (1, 2, 3)]
    # 3 images x 2 seeds = 6 fits on 4 devices: padded to 8, padding dropped
    rep = run(probs, p, [0, 1], strategy="vmap", chunk=2)
    sharded = rep.fits
    one = run(probs, p, [0, 1], strategy="vmap", chunk=2, devices=jax.devices()[:1]).fits
    assert rep.devices == 4 and len(sharded) == 6
    for a, b in zip(sharded, one):
        np.testing.assert_allclose(a.output, b.output, atol=1e-5)
        np.testing.assert_allclose(a.history[-1]["loss"], b.history[-1]["loss"], rtol=1e-5)
    print("ok")
""")


@pytest.mark.slow
def test_sharded_over_four_devices_equals_one_device(tmp_path):
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED)
    tests_dir = os.path.dirname(__file__)
    r = subprocess.run(
        [sys.executable, str(script), tests_dir],
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("many")
    save_png(d / "a.png", smooth_image(64, 64, seed=1))
    save_png(d / "b.png", smooth_image(64, 64, seed=2))
    save_png(d / "c.png", smooth_image(64, 64, seed=3))
    (d / "notes.txt").write_text("not an image")
    return d


def _cli(*args, env=ENV, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "dipjax.fit", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.mark.slow
def test_cli_fits_a_folder_of_images(image_dir, tmp_path):
    out = tmp_path / "out"
    r = _cli(
        "--task",
        "denoise",
        "--image",
        image_dir,
        "--degrade",
        "--iters",
        2,
        "--chunk",
        1,
        "--seeds",
        2,
        "--out",
        out,
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    for name in ("a", "b", "c"):
        for f in ("mean.png", "std.npy", "seed_0/output.png", "seed_1/output.png"):
            assert (out / name / f).is_file(), (name, f)
    rows = json.loads((out / "metrics.json").read_text())
    assert sorted((r["image"], str(r["seed"])) for r in rows) == sorted(
        (n, s) for n in "abc" for s in ("0", "1", "mean")
    )
    csv_lines = (out / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("image,path,seed") and len(csv_lines) == 10
    s = json.loads((out / "summary.json").read_text())
    assert s["groups"] == [["a", "b", "c"]] and s["seeds"] == [0, 1]


@pytest.mark.slow
def test_cli_glob_and_bad_entries(image_dir, tmp_path):
    r = _cli(
        "--task",
        "denoise",
        "--image",
        str(image_dir / "[ab].png"),
        "--degrade",
        "--iters",
        1,
        "--chunk",
        1,
        "--out",
        tmp_path / "g",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "g").iterdir() if p.is_dir()) == ["a", "b"]
    r = _cli(
        "--task",
        "denoise",
        "--image",
        image_dir / "a.png",
        image_dir / "notes.txt",
        "--out",
        tmp_path / "bad",
        "--quiet",
    )
    assert r.returncode == 2 and "notes.txt" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bad").exists()
    r = _cli("--task", "denoise", "--image", str(image_dir / "*.jpeg"), "--out", tmp_path / "n")
    assert r.returncode == 2 and "matches no file" in r.stderr


@pytest.mark.slow
def test_two_processes_split_the_images(image_dir, tmp_path):
    out = tmp_path / "dist"
    env = dict(ENV, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "dipjax.fit",
        "--task",
        "denoise",
        "--image",
        str(image_dir / "a.png"),
        str(image_dir / "b.png"),
        str(image_dir / "c.png"),
        "--degrade",
        "--iters",
        "1",
        "--chunk",
        "1",
        "--out",
        str(out),
        "--quiet",
        "--distributed",
        "--coordinator",
        f"127.0.0.1:{port}",
        "--num-processes",
        "2",
    ]
    procs = [
        subprocess.Popen(
            cmd + ["--process-id", str(i)],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in (0, 1)
    ]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in results]
    s0 = json.loads((out / "summary.process0.json").read_text())
    s1 = json.loads((out / "summary.process1.json").read_text())
    assert not list(out.glob("checkpoint*"))  # finished: nothing left to resume
    assert s0["groups"] == [["a", "c"]] and s1["groups"] == [["b"]]
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["image"] for r in rows] == ["a", "b", "c"]
    assert all((out / n / "output.png").is_file() for n in "abc")


@pytest.mark.slow
@pytest.mark.parametrize("vmap_faster", [True, False])
def test_measure_keeps_the_strategy_that_timed_faster(monkeypatch, vmap_faster):
    probs = _problems()[:1]
    # per fit-step: 2 stacked fits take 1.5 (0.75 each) or 3.0 (1.5 each) against 1.0 alone
    fake = lambda su, n, cache: (1.5 if vmap_faster else 3.0) if su.stacked else 1.0
    monkeypatch.setattr(plan, "seconds_per_step", fake)
    rep = run(probs, P, [0, 1], strategy="measure", chunk=2)
    assert rep.strategy == ("vmap" if vmap_faster else "sequential")
    assert rep.batches == ([[2]] if vmap_faster else [[1, 1]])
    assert rep.notes[0].endswith("running " + rep.strategy)


@pytest.mark.slow
def test_measure_times_both_strategies_and_keeps_the_faster():
    probs = _problems()[:1]
    rep = run(probs, P, [0, 1], strategy="measure", chunk=2)
    fits = rep.fits
    (note,) = rep.notes
    assert note.startswith("measured at 32x32: 2 vmapped fits") and "one fit" in note
    ran = note.rsplit("running ", 1)[1]
    assert rep.strategy == ran and rep.batches == ([[2]] if ran == "vmap" else [[1, 1]])
    assert [f.seed for f in fits] == [0, 1] and all(len(f.history) == 2 for f in fits)
