"""The command line, run as a user would: in a subprocess."""

import argparse
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

from dipjax.io import InputError
from dipjax.ops import conv, conv_choice

ENV = dict(os.environ, JAX_PLATFORMS="cpu")


def cli(*args, timeout=600):
    if "--help" not in args and "--chunk" not in args:
        args = (*args, "--chunk", 1)
    return subprocess.run(
        [sys.executable, "-m", "dipjax.fit", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


@pytest.fixture(scope="module")
def small_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "small.png"
    Image.fromarray((smooth_image(64, 64) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, small_png):
    out = tmp_path_factory.mktemp("run") / "out"
    r = cli(
        "--task",
        "denoise",
        "--image",
        small_png,
        "--degrade",
        "--iters",
        10,
        "--save-every",
        5,
        "--out",
        out,
        "--seed",
        1,
    )
    assert r.returncode == 0, r.stderr
    return out, r


@pytest.mark.slow
def test_cli_writes_every_output(run_dir):
    out, r = run_dir
    for name in (
        "output.png",
        "output_avg.png",
        "degraded.png",
        "comparison.png",
        "curves.png",
        "metrics.jsonl",
        "summary.json",
        "snapshots/iter_000005.png",
    ):
        assert (out / name).is_file(), name
    assert "no accelerator found" in r.stderr and "--preset denoise" in r.stderr
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 10 and json.loads(lines[-1])["iter"] == 10
    assert np.asarray(Image.open(out / "output.png")).shape == (64, 64, 3)
    assert not (out / ".dipjax.lock").exists()  # the run's lock goes with it


@pytest.mark.slow
def test_summary_fields(run_dir):
    s = json.loads((run_dir[0] / "summary.json").read_text())
    for key in (
        "task",
        "preset",
        "hyperparameters",
        "seeds",
        "images",
        "fits",
        "versions",
        "device",
        "compile_s",
        "step_s",
        "timing",
        "strategy",
        "conv_library",
        "groups",
        "batches",
    ):
        assert key in s, key
    assert s["task"] == "denoise" and s["preset"] == "denoise-fast" and s["seeds"] == [1]
    (fit,) = s["fits"]
    assert fit["seed"] == 1 and fit["iters_done"] == 10 and not fit["interrupted"]
    assert s["hyperparameters"]["iters"] == 10 and s["hyperparameters"]["sigma"] == 25.0
    assert s["hyperparameters"]["net"]["constructor"] == "skip"
    assert s["versions"]["jax"] and s["device"]["platform"] == "cpu"
    assert s["compile_s"] > 0 and s["step_s"] > 0
    assert {"psnr_gt", "psnr_gt_avg", "psnr_baseline", "ssim"} <= set(fit["final"])


@pytest.mark.slow
def test_same_seed_same_bytes(run_dir, small_png, tmp_path):
    r = cli(
        "--task",
        "denoise",
        "--image",
        small_png,
        "--degrade",
        "--iters",
        10,
        "--save-every",
        5,
        "--out",
        tmp_path / "again",
        "--seed",
        1,
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    assert "no accelerator found" in r.stderr  # --quiet hides the progress bar, not the notes
    for name in ("output.png", "output_avg.png", "degraded.png", "metrics.jsonl"):
        assert (tmp_path / "again" / name).read_bytes() == (run_dir[0] / name).read_bytes()


@pytest.mark.slow
def test_bf16_run_is_recorded_and_close_to_the_f32_run(run_dir, small_png, tmp_path):
    out = tmp_path / "bf16"
    args = ("--task", "denoise", "--image", small_png, "--degrade", "--iters", 10)
    r = cli(*args, "--save-every", 5, "--seed", 1, "--precision", "bf16", "--out", out)
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["hyperparameters"]["precision"] == "bf16"
    assert json.loads((out / "run.json").read_text())["precision"] == "bf16"
    # Iteration 1 is the same weights' output: bf16 products round operands by 2^-8 and the loss
    # averages those errors, so it stays within 1 % of the f32 loss. Later iterations are not
    # compared: ten Adam steps from a 2^-8 perturbation drift apart by up to a dB (seen in CI).
    first = [json.loads(open(d / "metrics.jsonl").readline()) for d in (out, run_dir[0])]
    assert first[0]["iter"] == first[1]["iter"] == 1
    assert first[0]["loss"] != first[1]["loss"]
    assert abs(first[0]["loss"] / first[1]["loss"] - 1) < 0.01
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["iter"] == 10 and last["loss"] < first[0]["loss"]
    assert (out / "output.png").read_bytes() != (run_dir[0] / "output.png").read_bytes()


@pytest.mark.slow
def test_existing_output_folder_is_refused(run_dir, small_png):
    r = cli("--task", "denoise", "--image", small_png, "--out", run_dir[0], "--iters", 1)
    assert r.returncode == 2
    assert "not empty" in r.stderr and "Traceback" not in r.stderr


def _bomb(path):
    """A PNG whose header claims 100000x100000 pixels (the data is one tiny row)."""
    import struct
    import zlib

    chunk = lambda kind, data: (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    )
    header = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 4))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "denoise", "--scale", "4"], "--scale does not apply to --task denoise"),
        (["--task", "denoise", "--iters", "0"], "--iters 0: must be an integer in 1..1000000"),
        (
            ["--task", "denoise", "--iters", "99999999999999999999"],
            "--iters 99999999999999999999: must",
        ),
        (["--task", "denoise", "--chunk", "20000"], "--chunk 20000: must be at most 10000"),
        (["--task", "denoise", "--sigma", "-3"], "--sigma -3.0: must be in [0, 255]"),
        (["--task", "denoise", "--lr", "inf"], "--lr inf: must be a finite number in (0, 10]"),
        (["--task", "denoise", "--seed", "-1"], "--seed -1: must be an integer >= 0"),
        (["--task", "denoise", "--seed", "99999999999999999999"], "--seed 99999999999999999999"),
        (["--task", "restore", "--keep", "1e-9", "--image", "IMG", "--degrade"], "keeps no pixel"),
        (["--task", "denoise", "--seeds", "100000"], "--seeds 100000: at most 1024"),
        (["--task", "denoise", "--image", "BOMB"], "is 10000 megapixels, over the limit of 40"),
        (["--task", "inpaint", "--image", "IMG", "--mask", "BOMB"], "bomb.png: 100000x100000"),
        (["--task", "denoise", "--image", "IMG", "--gt", "MASK"], "differs from the image's"),
        (["--task", "denoise", "--image", "/nonexistent.png"], "/nonexistent.png: no such file"),
        (["--preset", "superres-x4", "--task", "denoise"], "is for task superres, not denoise"),
        (["--task", "inpaint", "--image", "IMG", "--mask", "MASK"], "differs from the image"),
        (["--task", "denoise", "--image", "TEXT"], "not an image"),
        (
            ["--task", "denoise", "--image", "TINY", "--preset", "denoise"],
            "tiny.png: 40x40 pixels is too small for preset denoise, which needs an image of at "
            "least 64x64",
        ),
        (
            ["--task", "superres", "--image", "DOT", "--preset", "superres-fast"],
            "dot.png: 3x3 pixels is too small for preset superres-fast, which needs a "
            "low-resolution input of at least 8x8",
        ),
        (["--task", "denoise", "--image", "IMG", "--out-in-file"], "cannot write there"),
        (["--task", "inpaint", "--mask-kind", "text", "--keep", "0.3"], "--keep applies to"),
        (["--task", "denoise", "--quality", "10"], "--quality applies to --noise jpeg, not gauss"),
        (
            ["--task", "denoise", "--image", "IMG", "--noise", "saltpepper"],
            "applies with --degrade",
        ),
        (
            ["--task", "inpaint", "--image", "IMG", "--mask", "MASK", "--keep", "0.5"],
            "not to --mask",
        ),
    ],
)
def test_bad_input_is_one_line_and_status_2(args, message, small_png, tmp_path):
    mask = tmp_path / "mask.png"
    Image.fromarray(np.full((32, 40), 255, np.uint8)).save(mask)
    (tmp_path / "text.png").write_text("not a picture")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "tiny.png")
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(tmp_path / "dot.png")
    _bomb(tmp_path / "bomb.png")
    subst = {
        "BOMB": tmp_path / "bomb.png",
        "IMG": small_png,
        "MASK": mask,
        "TEXT": tmp_path / "text.png",
        "TINY": tmp_path / "tiny.png",
        "DOT": tmp_path / "dot.png",
    }
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


def test_help_lists_every_flag_with_one_default_each():
    from dipjax.cli_args import parser

    r = cli("--help")
    assert r.returncode == 0
    flags = [o for a in parser()._actions for o in a.option_strings if o.startswith("--")]
    assert len(flags) > 40
    for flag in flags:
        assert flag in r.stdout, flag
    assert "(default: dipjax-out)" in r.stdout and "(default: None)" not in r.stdout
    blocks = r.stdout.split("\n  --")[1:]
    assert len(blocks) == len(flags) - 1  # --help and -h share one block
    assert all(b.count("default") <= 1 for b in blocks), [
        b for b in blocks if b.count("default") > 1
    ]


def test_cli_lists_match_the_library():
    from dipjax import cli_args, presets, tasks
    from dipjax.ops import conv

    assert cli_args.TASKS == tasks.TASKS and cli_args.MASK_KINDS == tasks.MASK_KINDS
    assert cli_args.NOISES == tasks.NOISES
    assert cli_args.PRESET_NAMES == sorted(presets.PRESETS)
    assert cli_args.SGLD_NOISE == presets.SGLD_NOISE
    assert cli_args.PRECISIONS == conv.PRECISIONS


@pytest.mark.parametrize(
    "task, image, accelerator, hint",
    [
        ("inpaint", "data/vase.png", False, "add --preset inpaint-vase"),
        (
            "inpaint",
            "Library.PNG",
            True,
            "the paper's recipe for this image is --preset inpaint-library",
        ),
        ("restore", "kate.png", False, "add --preset restore-kate"),
        ("inpaint", "photo.png", False, "add --preset inpaint-kate"),  # the task's default
        ("inpaint", "photo.png", True, None),
        ("denoise", "fast.png", False, "add --preset denoise\n"),  # not an image's recipe
        ("denoise", "dd.png", False, "add --preset denoise\n"),
    ],
)
def test_the_paper_recipe_hinted_is_the_one_for_the_image(task, image, accelerator, hint):
    from dipjax import cli_args

    args = cli_args.parser().parse_args(["--task", task, "--image", image])
    preset, note = cli_args.resolve_preset(args, accelerator)
    assert preset.name == ("inpaint-kate" if accelerator else f"{task}-fast")
    assert (note is None) if hint is None else (hint in note + "\n"), note
    assert set(cli_args.IMAGE_PRESETS) <= set(cli_args.PRESET_NAMES)


def test_superres_x8_on_an_accelerator_hints_no_other_recipe():
    from dipjax import cli_args

    args = cli_args.parser().parse_args(["--task", "superres", "--scale", "8"])
    preset, note = cli_args.resolve_preset(args, True)
    assert preset.name == "superres-x8" and note is None
    preset, note = cli_args.resolve_preset(args, False)
    assert note.endswith("add --preset superres-x8"), note


def test_a_resume_on_an_accelerator_runs_the_preset_the_run_resolved(tmp_path):
    """run.json records the preset a run without --preset defaulted to (here the CPU's), so
    that resuming it where the default differs (an accelerator) runs the same preset."""
    from dipjax import cli_args, runfolder

    args = cli_args.parser().parse_args(["--task", "superres", "--scale", "8"])
    preset, _ = cli_args.resolve_preset(args, False)
    runfolder.write_record(tmp_path, args, preset.name)
    record = runfolder.read_record(tmp_path)
    again = argparse.Namespace(**{**vars(args), **{k: record.get(k) for k in runfolder.RUN_FLAGS}})
    assert record["preset"] == preset.name == "superres-fast"
    assert cli_args.resolve_preset(again, True)[0] == preset
    assert cli_args.resolve_preset(args, True)[0].name == "superres-x8"  # the default there


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--es-window", "5"], "--es-window applies with --early-stop"),
        (["--es-patience", "5"], "--es-patience applies with --early-stop"),
        (["--coordinator", "h:1"], "--coordinator applies with --distributed"),
        (["--num-processes", "2"], "--num-processes applies with --distributed"),
        (["--max-batch", "2", "--strategy", "sequential"], "--max-batch applies to vmapped"),
    ],
)
def test_flags_the_run_would_not_read_are_refused(flags, message):
    from dipjax import cli_args

    args = cli_args.parser().parse_args(["--task", "denoise", *flags])
    with pytest.raises(InputError, match=message):
        cli_args.resolve_preset(args, False)
    ok = {"--es-window": ["--early-stop"], "--es-patience": ["--early-stop"]}.get(flags[0])
    if ok:  # read with it
        cli_args.resolve_preset(cli_args.parser().parse_args(["--task", "denoise", *flags, *ok]), 0)


def test_the_last_seed_is_named_when_seeds_run_past_the_largest():
    from dipjax.engine import check_run_args

    with pytest.raises(InputError, match=r"with 2 seeds the last is 2147483648, over 2147483647"):
        check_run_args(seed=2**31 - 1, seeds=2)
    with pytest.raises(InputError, match=r"^seed=2147483648: over 2147483647$"):
        check_run_args(seed=2**31)


def test_a_resumed_run_keeps_flags_refused_since():
    """--resume rebuilds the flags from run.json; a run started before a combination was
    refused for not being read must still resume."""
    from dipjax import cli_args

    argv = ["--task", "denoise", "--image", "x.png", "--sigma", "25"]
    with pytest.raises(InputError, match="applies with --degrade"):
        cli_args.resolve_preset(cli_args.parser().parse_args(argv), False)
    args = cli_args.parser().parse_args(argv + ["--resume", "DIR"])
    assert cli_args.resolve_preset(args, False)[0].sigma == 25


def test_a_lock_file_replaced_between_open_and_lock_is_locked_anew(tmp_path, monkeypatch):
    """Another run removing its lock file as it ends, and a third creating it anew, between this
    run's open and flock: this run must hold the file that is there, not the removed one."""
    import fcntl

    from dipjax import runfolder

    path, real, raced = tmp_path / runfolder.LOCK, fcntl.flock, []

    def racing(f, op):
        if not raced:
            raced.append(1)
            path.unlink()
            path.touch()
        return real(f, op)

    monkeypatch.setattr(fcntl, "flock", racing)
    runfolder.lock(tmp_path)
    try:
        assert raced and runfolder._same_file(path, runfolder._held[str(tmp_path.resolve())])
    finally:
        runfolder.release()
    assert not path.exists()  # the lock file goes with the lock


def test_release_leaves_another_runs_lock_file(tmp_path):
    from dipjax import runfolder

    runfolder.lock(tmp_path)
    (tmp_path / runfolder.LOCK).unlink()  # the folder emptied and another run locking it
    (tmp_path / runfolder.LOCK).write_text("")
    runfolder.release()
    assert (tmp_path / runfolder.LOCK).exists()


def test_a_bad_flag_prints_two_lines_and_version_works():
    r = cli("--task", "nope")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 2
    assert "invalid choice: 'nope'" in r.stderr
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("dipjax ")


@pytest.mark.slow
def test_seed_ensemble_outputs(small_png, tmp_path):
    out = tmp_path / "ens"
    r = cli(
        "--task",
        "denoise",
        "--image",
        small_png,
        "--degrade",
        "--iters",
        4,
        "--seeds",
        2,
        "--out",
        out,
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    for name in (
        "seed_0/output.png",
        "seed_1/output.png",
        "mean.png",
        "std.png",
        "std.npy",
        "metrics.csv",
        "summary.json",
    ):
        assert (out / name).is_file(), name
    std = np.load(out / "std.npy")
    assert std.shape == (64, 64, 3) and std.max() > 0
    s = json.loads((out / "summary.json").read_text())
    assert s["seeds"] == [0, 1] and "psnr_mean" in s["images"][0]["ensemble"]
    assert [f["seed"] for f in s["fits"]] == [0, 1]
    for seed in (0, 1):
        assert len((out / f"seed_{seed}" / "metrics.jsonl").read_text().splitlines()) == 4


def test_submodules_are_attributes_of_a_plain_import():
    """README writes dipjax.ensemble.ensemble_stats(...) and dipjax.torch_weights.load(...)
    after `import dipjax` alone."""
    code = (
        "import dipjax; dipjax.ensemble.ensemble_stats; dipjax.torch_weights.load;"
        "dipjax.default_image\n"
        "assert not hasattr(dipjax, '__main__') and not hasattr(dipjax, 'a.b')\n"
        "try:\n    dipjax.no_such_name\nexcept AttributeError as e:\n    print(e)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "module 'dipjax' has no attribute 'no_such_name'"


def test_importing_the_cli_module_shadows_no_function():
    import importlib

    import dipjax

    before = {name: getattr(dipjax, name) for name in dipjax.__all__}
    importlib.import_module("dipjax.fit")
    assert all(getattr(dipjax, name) is obj for name, obj in before.items())
    assert not callable(dipjax.fit) and callable(dipjax.fit_problem)


@pytest.mark.slow
def test_timing_parts_add_up_to_the_wall_time(run_dir):
    t = json.loads((run_dir[0] / "summary.json").read_text())["timing"]
    parts = {k: v for k, v in t.items() if k not in ("other", "total") and not k.endswith("_at")}
    assert 0 < t["first_chunk_at"] < t["total"]
    assert {"startup", "prepare", "compile", "steps", "host", "outputs"} <= set(parts)
    assert all(v >= 0 for v in parts.values())
    # 'other' is what no part accounts for: the parts must cover all but a few percent
    assert t["other"] <= 0.05 * t["total"], t
    assert sum(parts.values()) + t["other"] == pytest.approx(t["total"], abs=1e-3)
    assert "wall " in run_dir[1].stderr and "largest other part" in run_dir[1].stderr


@pytest.mark.slow
def test_second_run_loads_its_steps_from_the_compile_cache(small_png, tmp_path):
    env = dict(ENV, DIPJAX_COMPILE_CACHE=str(tmp_path / "cache"))
    runs = []
    for k in range(2):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "dipjax.fit",
                "--task",
                "denoise",
                "--image",
                str(small_png),
                "--degrade",
                "--iters",
                "4",
                "--chunk",
                "2",
                "--quiet",
                "--out",
                str(tmp_path / f"o{k}"),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        assert r.returncode == 0, r.stderr
        # the convolution layers (their library) are measured by the first run only, and kept
        # in the cache
        assert ("convolution layer(s) (its library) on this machine once" in r.stderr) == (
            k == 0
        ), r.stderr
        runs.append(json.loads((tmp_path / f"o{k}" / "summary.json").read_text()))
    first, second = (s["timing"]["compile"] for s in runs)
    # loading from the cache still lowers (traces) the step and reads the executable
    assert second < 0.5 * first, (first, second)
    assert runs[0]["fits"][0]["final"] == runs[1]["fits"][0]["final"]
    info = subprocess.run(
        [sys.executable, "-m", "dipjax.fit", "--cache-info"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert info.returncode == 0 and str(tmp_path / "cache") in info.stdout
    assert " 0 entries" not in info.stdout
    assert re.search(r"; [1-9]\d* convolution layer\(s\) measured on this machine", info.stdout)


@pytest.mark.skipif(len(conv.libraries()) < 2, reason="this jaxlib offers one convolution library")
def test_a_run_measures_its_convolution_library_once_and_compiles_with_it(
    small_png, tmp_path, capsys, monkeypatch
):
    # Timings made up so that Eigen wins every layer: the step must be compiled with its options.
    from dipjax import fit

    timed, libraries = [], []
    monkeypatch.setattr(
        conv_choice,
        "measure",
        lambda la, lib, stop=None: (
            timed.append((la, lib)) or {la.rule(): 1.0 if lib == "eigen" else 3.0}
        ),
    )
    real = jax.stages.Lowered.compile
    monkeypatch.setattr(
        jax.stages.Lowered,
        "compile",
        lambda self, options=None: libraries.append(options) or real(self, options),
    )
    argv = ["--task", "denoise", "--image", str(small_png), "--degrade", "--iters", "2"]
    argv += ["--quiet", "--compile-cache", str(tmp_path / "cache")]
    try:
        assert fit.main(argv + ["--out", str(tmp_path / "a")]) == 0
        err = capsys.readouterr().err
        assert "convolution layer(s) (its library) on this machine once" in err, err
        layers = {la for la, _ in timed}
        assert layers and sorted(timed, key=str) == sorted(
            [(la, lib) for la in layers for lib in ("ynnpack", "eigen")], key=str
        )
        entries = conv_choice.entries(tmp_path / "cache" / conv_choice.FILE_NAME)
        assert len(entries) == 2 * len(layers)
        assert conv.compiler_options("eigen") in libraries  # the step compiled with Eigen
        assert json.loads((tmp_path / "a" / "summary.json").read_text())["conv_library"] == [
            "eigen"
        ]
        n = len(timed)
        assert fit.main(argv + ["--out", str(tmp_path / "b")]) == 0
        assert "on this machine once" not in capsys.readouterr().err and len(timed) == n
        # --measure-convs: the same layers again, now every variant
        assert fit.main(argv + ["--out", str(tmp_path / "c"), "--measure-convs"]) == 0
        assert "convolution layer(s) on this machine once" in capsys.readouterr().err
        entries = conv_choice.entries(tmp_path / "cache" / conv_choice.FILE_NAME)
        assert len(timed) == 2 * n  # every variant tried this time, not the rule's alone
        assert all({"xla", "dot"} <= set(e["tried"]) for e in entries.values())
    finally:
        conv_choice.use_file(None)


def test_measuring_convolutions_needs_the_compile_cache(capsys):
    from dipjax import fit

    assert fit.main(["--task", "denoise", "--measure-convs", "--no-compile-cache"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--measure-convs" in err[0] and "--no-compile-cache" in err[0]


# Flags about this invocation, not the run: --resume may differ in them.
NOT_RUN_FLAGS = {
    "distributed",
    "coordinator",
    "num_processes",
    "process_id",
    "out",
    "overwrite",
    "resume",
    "compile_cache",
    "no_compile_cache",
    "measure_convs",
    "cache_info",
    "clear_cache",
    "quiet",
    "version",
}


def test_every_setting_is_recorded_for_resume(tmp_path):
    from dipjax import cli_args, runfolder

    ap = cli_args.parser()
    dests = {a.dest for a in ap._actions if a.dest != "help"}
    assert dests - NOT_RUN_FLAGS == set(runfolder.RUN_FLAGS)
    args = ap.parse_args(["--task", "denoise", "--sgld", "--sgld-burn-in", "3"])
    runfolder.write_record(tmp_path, args, "denoise-fast")
    record = runfolder.read_record(str(tmp_path))
    assert (record["sgld"], record["sgld_burn_in"]) == (0.5, 3)
    defaults = {k: ap.get_default(k) for k in (*runfolder.RUN_FLAGS, "out")}
    resume = lambda *flags: runfolder.refuse_changes(
        ap.parse_args(["--resume", str(tmp_path), *flags]), defaults
    )
    with pytest.raises(InputError, match="--sgld cannot change"):
        resume("--sgld", "8")
    resume("--sgld-burn-in", "3", "--preset", "denoise-fast", "--out", str(tmp_path))  # its own
    for flags in (["--out", str(tmp_path / "elsewhere")], ["--overwrite"]):
        with pytest.raises(InputError, match=f"writes into that folder: drop {flags[0]}"):
            resume(*flags)
