"""Smoke tests of the benchmark scripts with tiny settings (the numbers they print are not
checked here; their shape and plumbing are)."""

import json
import os
import pathlib
import statistics
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# LLVM's optimisation off: the scripts' compile time is most of each smoke (54 s against 91 s
# for conv_choices.py's), and their numbers are not checked here.
_FLAGS = "--xla_backend_optimization_level=0"
ENV = dict(os.environ, JAX_PLATFORMS="cpu")
ENV["XLA_FLAGS"] = f"{ENV.get('XLA_FLAGS', '')} {_FLAGS}".strip()
REFERENCE = os.environ.get("DIPJAX_REFERENCE_DIR")
pytestmark = pytest.mark.slow  # every test runs a script in a subprocess


def _run(script, *args, timeout=600):
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments" / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


@pytest.mark.parametrize("with_reference", [False, True])
def test_bench_reference_smoke(tmp_path, with_reference):
    if with_reference and not REFERENCE:
        pytest.skip("set DIPJAX_REFERENCE_DIR to a deep-image-prior checkout (needs torch)")
    reference = REFERENCE if with_reference else None
    args = [
        "--tiny",
        "--sizes",
        16,
        "--recipes",
        "denoise",
        "--iters",
        1,
        "--warmup",
        1,
        "--precision",
        "f32",
        "bf16",
        "--pairs",
        2 if reference else 1,  # alternation only matters beside the reference
        "--conv",
        "measured",
        "--out",
        tmp_path,
    ] + (["--reference-dir", reference] if reference else [])
    r = _run("bench_reference.py", *args)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    (row,) = rows
    assert row["jax"]["step_s"] > 0 and row["jax"]["flops"] > 0
    assert row["jax"]["precision"] == "f32" and row["jax_bf16"]["precision"] == "bf16"
    assert ("torch" in row) == ("speedup" in row) == ("speedup_bf16" in row) == bool(reference)
    runs = 2 if reference else 1
    assert len(row["jax"]["step_s_runs"]) == len(row["jax_bf16"]["step_s_runs"]) == runs
    if reference:
        assert len(row["speedup_pairs"]) == 2
        assert min(row["speedup_pairs"]) <= row["speedup"] <= max(row["speedup_pairs"])
    # the first run measured the convolution layers and kept them; the second read them
    stored = json.loads((tmp_path / "conv_choices.json").read_text())
    assert len(stored) == 1 and len(next(iter(stored.values()))) > 0
    assert row["jax"]["measure_s"] > 0
    assert (tmp_path / "table.md").read_text().count("| denoise | 16 |") == 1


@pytest.mark.parametrize("case", [(3, 1, 0, 12), (3, 2, 1, 12), (3, 1, 1, 3), (1, 1, 0, 20)])
def test_the_conv_stand_in_has_each_convolutions_shapes_in_both_frameworks(case):
    import jax
    import jax.numpy as jnp
    import numpy as np

    sys.path.insert(0, str(ROOT / "experiments"))
    from bench_reference import standin_conv

    from dipjax.ops import conv

    k, stride, padding, out = case
    x = np.random.default_rng(0).normal(size=(1, 11, 9, 6)).astype(np.float32)
    w = np.ones((k, k, 6, out), np.float32)
    want = conv.conv2d(jnp.asarray(x), jnp.asarray(w), stride, padding).shape

    def stand_in(x, w):
        return standin_conv(x, w.mean(), out, k, stride, padding, jnp.concatenate, -1)

    assert stand_in(x, w).shape == want
    gx, gw = jax.grad(lambda x, w: jnp.sum(stand_in(x, w)), (0, 1))(x, w)
    assert float(jnp.abs(gx).sum()) > 0 and float(jnp.abs(gw).sum()) > 0
    torch = pytest.importorskip("torch")
    tx = torch.tensor(x.transpose(0, 3, 1, 2).copy())
    y = standin_conv(tx, torch.tensor(1.0), out, k, stride, padding, torch.cat, 1)
    ref = torch.nn.functional.conv2d(tx, torch.ones(out, 6, k, k), stride=stride, padding=padding)
    assert y.shape == ref.shape


def test_bench_reference_stand_in_smoke(tmp_path):
    args = ["--tiny", "--sizes", 16, "--recipes", "denoise", "--iters", 1, "--warmup", 1]
    args += ["--conv", "standin", "--out", tmp_path]
    r = _run("bench_reference.py", *args, *(["--reference-dir", REFERENCE] if REFERENCE else []))
    assert r.returncode == 0, r.stderr[-2000:]
    (row,) = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert row["jax"]["conv"] == "standin" and row["jax"]["step_s"] > 0
    assert ("speedup" in row) == bool(REFERENCE)
    assert "replaced on both sides by a stand-in" in (tmp_path / "table.md").read_text()


def test_downsampler_speed_smoke():
    r = _run("downsampler_speed.py", "--sizes", 32, "--rounds", 1)
    assert r.returncode == 0, r.stderr[-2000:]
    row = next(x for x in r.stdout.splitlines() if x.startswith("| 32 |"))
    assert float(row.split("|")[-2]) < 1e-5  # the two ways compute the same thing


@pytest.mark.parametrize("precision", ["f32", "bf16"])
def test_conv_parts_smoke(precision):
    args = ("--size", 8, "--channels", 4, "--out-channels", 4, "--rounds", 1)
    r = _run("conv_parts.py", *args, "--precision", precision, "--taps")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"unpadded, {precision};" in r.stdout
    for row in ("taps forward", "taps weight gradient", "patches alone"):
        assert f"| {row} |" in r.stdout
    for v in ("xla", "crop", "strips-2048", "dot"):
        for part in ("forward", "input gradient", "weight gradient"):
            assert f"| {v} {part} |" in r.stdout
    r = _run(
        "conv_parts.py", *args, "--precision", precision, "--kernel", 1, "--variants", "dot-4d"
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"1x1 convolution, (1, 8, 8, 4) -> (1, 8, 8, 4), unpadded, {precision}" in r.stdout
    assert "| dot-4d weight gradient |" in r.stdout


def test_bench_reference_refuses_a_folder_that_is_not_a_checkout(tmp_path):
    r = _run("bench_reference.py", "--reference-dir", tmp_path, "--out", tmp_path / "o")
    assert r.returncode != 0 and "not a deep-image-prior checkout" in r.stderr


def test_bench_batching_smoke(tmp_path):
    r = _run(
        "bench_batching.py",
        "--preset",
        "denoise-fast",
        "--sizes",
        32,
        "--ks",
        2,
        "--repeats",
        1,
        "--convs",
        "dot",
        "--tiny",
        "--out",
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [(x["size"], x["k"], x["conv"]) for x in rows] == [(32, 2, "dot")]
    assert all(x["vmap_fit_it_per_s"] > 0 and x["sequential_fit_it_per_s"] > 0 for x in rows)
    assert (tmp_path / "throughput.png").is_file()


def _image(path, size, seed):
    import imageio.v3 as iio
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    iio.imwrite(path, (rng.random((size, size, 3)) * 255).astype(np.uint8))


def test_reproduce_smoke(tmp_path):
    data = tmp_path / "data"
    _image(data / "Set5" / "x4" / "baby.png", 64, 0)
    _image(data / "denoise9" / "F16.png", 64, 1)
    _image(data / "denoise9" / "sigma25" / "F16.png", 64, 2)
    _image(data / "dip" / "denoising" / "F16_GT.png", 64, 3)
    out = tmp_path / "out"
    r = _run(
        "reproduce.py",
        "--data-dir",
        data,
        "--groups",
        "sr4",
        "denoise",
        "notebooks",
        "--tiny",
        "--iters",
        2,
        "--limit",
        1,
        "--out",
        out,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(x["group"], x["image"]) for x in rows] == [
        ("sr4", "baby"),
        ("denoise", "F16"),
        ("notebooks", "F16 denoise"),
    ]
    assert all(x["iters"] == 2 and 0 < x["psnr"] < 100 for x in rows)
    table = (out / "table.md").read_text()
    # The paper's column is the committed scores of the published images (x4 baby: 31.49 dB).
    assert "| DIP, paper's images (deep_prior) | 31.49 |" in table
    assert "| F16 denoise | denoise | 2 |" in table


def test_reproduce_refuses_a_folder_without_the_data(tmp_path):
    r = _run("reproduce.py", "--data-dir", tmp_path, "--out", tmp_path / "o")
    assert r.returncode != 0 and "no Set5/ folder" in r.stderr


@pytest.mark.slow
def test_bench_end_to_end_smoke(tmp_path):
    r = _run("bench_end_to_end.py", "--size", 64, "--iters", 2, "--out", tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [row["side"] for row in rows] == ["dipjax, first run", "dipjax, second run (cache)"]
    first, second = rows
    assert 0 < first["first_iteration_s"] < first["wall_s"]
    assert second["timing"]["compile"] < first["timing"]["compile"]
    assert (tmp_path / "table.md").read_text().count("| superres-fast | 2 |") == 2


def test_machine_and_step_variants_smoke():
    r = _run("machine.py", "--n", 128, "--repeats", 1, "--no-torch")
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(r.stdout.splitlines()[0])
    assert d["xla_f32_gflops"] > 0 and d["cpus"] >= 1 and "XLA matmul f32" in r.stdout
    r = _run(
        "step_variants.py", "--side", 32, "--variants", "xla:2048", "--options", "{}", "--rounds", 1
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "image (32, 32)" in r.stdout and r.stdout.count("compile") == 2
    assert r.stdout.count("step median") == 1


def test_machine_names_the_cpu_family_and_model():
    sys.path.insert(0, str(ROOT / "experiments"))
    from machine import cpu_model

    info = "processor\t: 0\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n"
    assert cpu_model(info) == "AMD EPYC (family 25, model 17)"
    assert cpu_model(info + "processor\t: 1\ncpu family\t: 6\n") == "AMD EPYC (family 25, model 17)"
    assert cpu_model("model name\t: Some CPU\n") == "Some CPU"


def test_conv_choices_smoke():
    r = _run("conv_choices.py", "--preset", "denoise-fast", "--side", 32, "--rounds", 1, "--tiny")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| fixed rules, XLA's default library |" in r.stdout
    assert "| fixed rules, library measured (" in r.stdout
    assert "| measured, library measured (" in r.stdout
    assert r.stdout.count("| layer | library | fixed rule | chosen |") == 2


def test_profile_reference_smoke():
    if not REFERENCE:
        pytest.skip("set DIPJAX_REFERENCE_DIR to a deep-image-prior checkout (needs torch)")
    r = _run(
        "profile_reference.py", "--reference-dir", REFERENCE, "--tiny", "--size", 16, "--steps", 1
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "aten::" in r.stdout and "convolutions " in r.stdout


def test_host_memory_speed_smoke(tmp_path):
    args = ("--tiny", "--sizes", 16, "--iters", 1, "--warmup", 1, "--pairs", 1, "--out", tmp_path)
    r = _run("host_memory_speed.py", *args)
    assert r.returncode == 0, r.stderr[-2000:]
    (row,) = json.loads((tmp_path / "results.json").read_text())["rows"]
    runs = row["step_s_runs"]
    assert set(runs) == {"dipjax keep", "dipjax system"} and all(len(v) == 1 for v in runs.values())
    assert row["dipjax_gain"] == runs["dipjax system"][0] / runs["dipjax keep"][0]
    assert "| denoise | 16 |" in r.stdout


def test_written_gradients_smoke():
    r = _run("written_gradients.py", "--side", 64, "--rounds", 1, "--only", "all")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {
        line.split("|")[1].strip(): line.split("|")
        for line in r.stdout.splitlines()
        if line.startswith("| ") and "ms" not in line
    }
    assert set(rows) == {"written out", "all by autodiff"}
    # the written-out gradients write fewer full-resolution arrays than JAX's own
    written, autodiff = (int(rows[k][4]) for k in rows)
    assert 0 < written < autodiff
    bad = _run("written_gradients.py", "--only", "dot+nothing")
    assert bad.returncode == 2 and "--only dot+nothing" in bad.stderr


def test_step_page_faults_smoke():
    args = ("--preset", "denoise-fast", "--side", 32, "--steps", 2, "--pairs", 2, "--tiny")
    r = _run(
        "step_page_faults.py", *args, "--settings", "system", "keep", "--warmup", 1, "--by-step"
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in r.stdout.splitlines() if line.startswith("| ")]
    assert [row[0].strip() for row in rows[1:]] == ["system", "keep"]
    for row in rows[1:]:
        ms, faults, user, system, rss = map(float, row[1:])
        assert ms > 0 and faults >= 0 and rss > 0
    assert "minor page faults of steps 2-3, per run:" in r.stdout
    by_step = [line.split(": ") for line in r.stdout.splitlines() if ", run " in line]
    names = ["system, run 1", "system, run 2", "keep, run 1", "keep, run 2"]
    assert [name for name, _ in by_step] == names
    counts = [[int(f) for f in faults.split()] for _, faults in by_step]
    assert all(len(c) == 2 and min(c) >= 0 for c in counts)  # one count per timed step
    for row, runs in zip(rows[1:], (counts[:2], counts[2:])):  # the table: median of medians
        per_run = [statistics.median(c) for c in runs]
        assert abs(float(row[2]) - statistics.median(per_run)) <= 0.5


def test_step_compile_smoke(tmp_path):
    args = ("--preset", "denoise-dd-fast", "--side", 64, "--steps", 1, "--rounds", 1)
    r = _run("step_compile.py", *args, "--library", "ynnpack", "--checkouts", ROOT, ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in r.stdout.splitlines() if line.startswith("| /")]
    assert len(rows) == 2 and all(float(x) > 0 for row in rows for x in row[1:])
    assert "compile_s: last / first, paired:" in r.stdout
    bad = _run("step_compile.py", "--checkouts", tmp_path)
    assert bad.returncode != 0 and "not a dipjax checkout" in bad.stderr


def test_noise_draw_smoke():
    args = ("--sizes", 16, "--rounds", 1, "--step", "--preset", "denoise-fast", "--side", 32)
    r = _run("noise_draw.py", *args, "--step-rounds", 1, "--tiny")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| 16 | same numbers | True |" in r.stdout
    rows = [line.split("|")[1:-1] for line in r.stdout.splitlines() if line.startswith("| ")]
    steps = [row for row in rows if len(row) == 3 and row[0].strip().endswith("normal")]
    assert len(steps) == 2 and all(float(x) > 0 for row in steps for x in row[1:])
    assert "paired speed-up" in r.stdout


@pytest.mark.slow
def test_early_stop_cost_smoke():
    args = ("--preset", "denoise-dd-fast", "--iters", 3, "--window", 2, "--rounds", 1)
    r = _run("early_stop_cost.py", *args)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in r.stdout.splitlines() if line.startswith("| /")]
    assert len(rows) == 1 and all(float(x.rstrip(" x")) > 0 for x in rows[0][1:])
