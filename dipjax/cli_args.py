"""The command line's flags and how they become settings: the parser, the preset with the
flags' overrides (``resolve_preset``) and the compile cache (``cache_command``). Parsing imports
nothing heavy, so that ``--help`` and a bad flag answer without loading JAX."""

from __future__ import annotations

import argparse
from typing import Optional

from dipjax.io import InputError

# Kept here as literals so that parsing imports nothing heavy; tests check them against
# dipjax.tasks, dipjax.presets and dipjax.ops.conv.
TASKS = ("denoise", "superres", "inpaint", "restore", "flash-no-flash", "deblur")
NOISES = ("gauss", "saltpepper", "jpeg")
MASK_KINDS = ("file", "text", "random", "rect")
SGLD_NOISE = 0.5
PRECISIONS = ("f32", "bf16")
PRESET_NAMES = sorted(
    [
        "deblur",
        "deblur-fast",
        "denoise",
        "denoise-dd",
        "denoise-dd-fast",
        "denoise-fast",
        "denoise-jpeg",
        "flash-no-flash",
        "flash-no-flash-fast",
        "inpaint-dd",
        "inpaint-dd-fast",
        "inpaint-fast",
        "inpaint-kate",
        "inpaint-library",
        "inpaint-vase",
        "restore-barbara",
        "restore-fast",
        "restore-kate",
        "superres-fast",
        "superres-x4",
        "superres-x8",
    ]
)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows '(default: X)' only where a flag has a default of its own and the help text does
    not already name one."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """On a bad flag: the usage line and the error, not the whole flag list."""

    def error(self, message):
        self.exit(2, f"usage: {self.prog} [flags] (see --help)\n{self.prog}: error: {message}\n")


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("dipjax")
    except metadata.PackageNotFoundError:
        return "unknown"


def parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="python -m dipjax.fit",
        formatter_class=_Formatter,
        description="Restore an image with Deep Image Prior. With only --task, runs on the "
        "image that ships with dipjax, degraded on purpose.",
    )
    a = ap.add_argument
    a("--task", choices=TASKS, help="what to restore (default: the preset's task)")
    a(
        "--preset",
        choices=PRESET_NAMES,
        help="recipe; default: the paper's on an accelerator, the task's '-fast' one on a CPU",
    )
    a(
        "--image",
        nargs="+",
        help="input image(s): noisy / low-resolution / with holes / "
        "no-flash photo; several files, a folder or a quoted glob fit them all, one sub-folder "
        "of --out each (default: the packaged image, degraded)",
    )
    a("--mask", help="inpaint/restore: mask image, white = known pixel (thresholded at 0.5)")
    a(
        "--mask-kind",
        choices=MASK_KINDS[1:],
        help="inpaint/restore: generate a mask instead of --mask (default: the preset's)",
    )
    a("--keep", type=float, help="fraction of pixels kept by --mask-kind random")
    a("--flash", help="flash-no-flash: the flash photo, fed to the net")
    a("--blur", help="deblur: the blur, gauss:SIGMA in pixels (default: the preset's, gauss:2)")
    a("--kernel", help="deblur: a blur kernel image instead of --blur (scaled to sum 1)")
    a("--gt", help="clean image to measure PSNR against")
    a(
        "--degrade",
        action="store_true",
        help="--image is clean: degrade it first (noise, "
        "downscale, mask) and measure PSNR against it",
    )
    a("--noise", choices=NOISES, help="denoise with --degrade: noise kind")
    a(
        "--sigma",
        type=float,
        help="denoise/deblur: Gaussian noise std in 0-255 units added "
        "with --degrade (default: the preset's, 25 for denoise, 2 for deblur)",
    )
    a("--density", type=float, help="denoise, saltpepper: fraction of pixels hit")
    a("--quality", type=int, help="denoise, jpeg: JPEG quality 1-95")
    a("--scale", type=int, choices=(2, 4, 8), help="superres: factor (default: the preset's)")
    a("--iters", type=int, help="iterations (default: the preset's)")
    a("--lr", type=float, help="Adam learning rate (default: the preset's)")
    a("--reg-noise-std", type=float, help="std of the per-iteration input perturbation")
    a(
        "--tv-weight",
        type=float,
        help="add this weight x the output's total variation to the loss (DIP-TV; default 0)",
    )
    a(
        "--early-stop",
        nargs="?",
        const="mark",
        choices=("off", "mark", "halt"),
        help="detect the best iteration without ground truth (ES-WMV) and save output_es.png "
        "there; 'mark' (the flag alone) goes on to --iters, 'halt' stops there",
    )
    a(
        "--sgld",
        nargs="?",
        type=float,
        const=SGLD_NOISE,
        help="Bayesian DIP: Langevin noise of this scale x the learning rate on every weight "
        f"after each step (the flag alone: {SGLD_NOISE:g}); the outputs after the burn-in are "
        "posterior samples, written as posterior_mean.png and posterior_std.png (+ .npy)",
    )
    a(
        "--sgld-burn-in",
        type=int,
        help="--sgld: iterations before samples are kept (default: half of --iters)",
    )
    a(
        "--weight-decay",
        type=float,
        help="L2 weight prior added to the gradient, as torch Adam's weight_decay (default 0)",
    )
    a(
        "--precision",
        choices=PRECISIONS,
        help="the generator's convolutions in float32 or bfloat16 (float32 accumulation, "
        "parameters and optimizer; see README for its speed and quality; default f32)",
    )
    a("--es-window", type=int, help="--early-stop: outputs in the variance window (default 100)")
    a(
        "--es-patience",
        type=int,
        help="--early-stop: iterations without a new variance minimum "
        "before it fires (default 500)",
    )
    a(
        "--init-style",
        choices=("modern", "legacy"),
        help="weight init: modern torch (BN scale 1) or torch 0.4 (BN scale U[0,1))",
    )
    a(
        "--seed",
        type=int,
        default=0,
        help="random seed (weights, input noise, degradation; default 0)",
    )
    a(
        "--seeds",
        type=int,
        default=1,
        help="fit K seeds (--seed, --seed+1, ...) and write their mean and a per-pixel std map",
    )
    a(
        "--strategy",
        choices=("auto", "vmap", "sequential", "measure"),
        default="auto",
        help="how several fits (--seeds, several images) run: one vmapped step, one after "
        "another, or whichever a timed chunk of each finds faster (auto: sequential on a CPU, "
        "where vmapped convolutions are slow, measure elsewhere)",
    )
    a(
        "--max-batch",
        type=int,
        default=0,
        help="most fits vmapped at once (default: as many as the memory estimate allows)",
    )
    a(
        "--distributed",
        action="store_true",
        help="one process of a multi-process run "
        "(jax.distributed): the images are split over the processes; process 0 writes the "
        "combined metrics table",
    )
    a(
        "--coordinator",
        help="--distributed: coordinator host:port (default: from the cluster "
        "environment, e.g. SLURM)",
    )
    a("--num-processes", type=int, help="--distributed: number of processes")
    a("--process-id", type=int, help="--distributed: this process's index")
    a("--out", default="dipjax-out", help="output folder")
    a("--overwrite", action="store_true", help="write into an existing, non-empty --out")
    a(
        "--save-every",
        type=int,
        default=0,
        help="also save the output every N iterations (default 0: never)",
    )
    a(
        "--checkpoint-every",
        type=int,
        default=500,
        help="save a checkpoint every N iterations (0: never); Ctrl-C and SIGTERM always save one",
    )
    a(
        "--resume",
        metavar="DIR",
        help="continue the interrupted run in DIR (its --out); other "
        "flags are taken from DIR/run.json",
    )
    a("--chunk", type=int, default=0, help="steps per host call (default: 1 on CPU, 50 else)")
    a(
        "--compile-cache",
        metavar="DIR",
        help="keep compiled steps here for later runs "
        "(default: $DIPJAX_COMPILE_CACHE, else ~/.cache/dipjax/xla)",
    )
    a("--no-compile-cache", action="store_true", help="compile everything afresh, keep nothing")
    a(
        "--measure-convs",
        action="store_true",
        help="on a CPU, time each convolution layer's ways of computing once on this machine and "
        "use the fastest (kept in the compile cache; the first run at an image size takes "
        "10-80 s longer; without it only the convolution library is measured, 2-40 s once)",
    )
    a(
        "--cache-info",
        action="store_true",
        help="print the compile cache's folder and size, and exit",
    )
    a("--clear-cache", action="store_true", help="empty the compile cache, and exit")
    a(
        "--quiet",
        action="store_true",
        help="no progress bar (warnings and the final lines are still printed)",
    )
    a("--version", action="version", version=f"dipjax {_version()}")
    return ap


# Preset fields a flag of the same name overrides.
PRESET_FLAGS = (
    "iters",
    "lr",
    "reg_noise_std",
    "init_style",
    "scale",
    "sigma",
    "noise",
    "density",
    "quality",
    "mask_kind",
    "keep",
    "blur",
    "tv_weight",
    "early_stop",
    "es_window",
    "es_patience",
    "sgld",
    "sgld_burn_in",
    "weight_decay",
    "precision",
)
# The paper's recipes for one of its own images, named after it.
IMAGE_PRESETS = (
    "inpaint-kate",
    "inpaint-library",
    "inpaint-vase",
    "restore-barbara",
    "restore-kate",
)
# Flags that only some tasks read.
TASK_FLAGS = {
    "scale": ("superres",),
    "sigma": ("denoise", "deblur"),
    "noise": ("denoise",),
    "density": ("denoise",),
    "quality": ("denoise",),
    "mask": ("inpaint", "restore"),
    "mask_kind": ("inpaint", "restore"),
    "keep": ("inpaint", "restore"),
    "flash": ("flash-no-flash",),
    "blur": ("deblur",),
    "kernel": ("deblur",),
}


def cache_command(args) -> bool:
    """Set up the compile cache; True when the command was only about the cache."""
    import pathlib

    from dipjax import compile_cache

    folder = (
        None
        if args.no_compile_cache
        else (
            pathlib.Path(args.compile_cache) if args.compile_cache else compile_cache.default_dir()
        )
    )
    if args.cache_info or args.clear_cache:
        if folder is None:
            print("compile cache: off")
        elif args.clear_cache:
            compile_cache.clear(folder)
            print(f"compile cache {folder}: cleared")
        else:
            print(compile_cache.info(folder))
        return True
    if folder is not None:
        try:
            compile_cache.enable(folder)
        except OSError as e:
            raise InputError(
                f"--compile-cache {folder}: cannot use it ({e.strerror or e})"
            ) from None
    if args.measure_convs and folder is None:
        raise InputError(
            "--measure-convs keeps its measurements in the compile cache: "
            "it cannot go with --no-compile-cache"
        )
    from dipjax.ops import conv_choice

    # The library the convolutions run by is measured by default (kept in the compile cache);
    # every variant of every layer with --measure-convs.
    path = None if folder is None else folder / conv_choice.FILE_NAME
    conv_choice.use_file(path, every_variant=args.measure_convs)
    return False


def resolve_preset(args, accelerator: bool):
    """The preset named or defaulted, with the flags' overrides. Returns (preset, note)."""
    from dipjax import tasks
    from dipjax.presets import FAST_DEFAULT, PAPER_DEFAULT, get_preset

    note = None
    if args.preset:
        p = get_preset(args.preset, args.task)
    elif args.task:
        big = args.task == "superres" and args.scale == 8
        name = (
            "superres-x8"
            if big and accelerator
            else (PAPER_DEFAULT if accelerator else FAST_DEFAULT)[args.task]
        )
        p = get_preset(name)
        paper = _paper_preset_for(args.task, args.image) or (
            "superres-x8" if big else PAPER_DEFAULT[args.task]
        )
        if not accelerator:
            iters = args.iters or p.iters
            where = ""
            if not args.image and p.demo_side:
                where = f" on the packaged image's top-centre {p.demo_side}x{p.demo_side}"
            note = (
                f"no accelerator found: running the CPU preset '{name}' ({iters} iters){where}; "
                f"for the paper's recipe add --preset {paper}"
            )
        elif paper != name:
            note = f"running preset '{name}'; the paper's recipe for this image is --preset {paper}"
    else:
        raise InputError("give --task (one of " + ", ".join(tasks.TASKS) + ") or --preset")
    if args.blur is not None and args.kernel is not None:
        raise InputError("give --blur or --kernel, not both")
    for flag, allowed in TASK_FLAGS.items():
        if getattr(args, flag) is not None and p.task not in allowed:
            raise InputError(f"--{flag.replace('_', '-')} does not apply to --task {p.task}")
    p = p.replace(**{k: getattr(args, k) for k in PRESET_FLAGS})
    unread = None if getattr(args, "resume", None) else _unread_flag(args, p)  # a run's own
    if unread:
        raise InputError(unread)
    return p, note


def _paper_preset_for(task: str, images) -> Optional[str]:
    """The paper's recipe for one of its own images, named as the reference names it
    (``--image vase.png`` for inpainting: ``inpaint-vase``), or None."""
    import pathlib

    if not images or len(images) != 1:
        return None
    name = f"{task}-{pathlib.Path(images[0]).stem.lower()}"
    return name if name in IMAGE_PRESETS else None


def _unread_flag(args, p) -> Optional[str]:
    """Why a flag given would not be read by this run (degradation, mask, early-stopping,
    distributed and batching flags), or None."""
    given = lambda flag: getattr(args, flag) is not None
    if args.image and not args.degrade:
        for flag in ("noise", "sigma", "density", "quality"):
            if given(flag):
                return (
                    f"--{flag} applies with --degrade (without it, --image is taken as "
                    f"already degraded)"
                )
    if p.task == "denoise":
        for flag, noise in (("sigma", "gauss"), ("density", "saltpepper"), ("quality", "jpeg")):
            if given(flag) and p.noise != noise:
                return f"--{flag} applies to --noise {noise}, not {p.noise}"
    if given("keep") and args.mask:
        return "--keep applies to a generated mask (--mask-kind random), not to --mask"
    if given("mask_kind") and args.mask:
        return "give --mask or --mask-kind, not both"
    if given("keep") and p.mask_kind != "random":
        return f"--keep applies to --mask-kind random, not {p.mask_kind}"
    for flag in ("es_window", "es_patience"):
        if given(flag) and p.early_stop == "off":
            return f"--{flag.replace('_', '-')} applies with --early-stop"
    for flag in ("coordinator", "num_processes", "process_id"):
        if getattr(args, flag, None) is not None and not getattr(args, "distributed", False):
            return f"--{flag.replace('_', '-')} applies with --distributed"
    if getattr(args, "max_batch", 0) and getattr(args, "strategy", "auto") == "sequential":
        return "--max-batch applies to vmapped fits, not to --strategy sequential"
    return None
