"""From the page's form to a command line: the argv a user would type for the same run, and the
command line's own checks run on it before anything is written (same one-line messages).

Values from the client only ever become argv values (``--flag=value``, so none can pass for a
flag) and the client's file names are only shown: uploads are stored under fixed names.
"""

from __future__ import annotations

import argparse
import pathlib
from typing import Optional

from dipjax import cli_args
from dipjax.io import InputError

# The tasks the page offers (flash-no-flash needs a pair of photos: the command line does it).
TASKS = ("denoise", "superres", "inpaint", "restore", "deblur")
MASKED = ("inpaint", "restore")
MASK_SOURCES = ("paint", "file") + cli_args.MASK_KINDS[1:]
EARLY_STOP = ("off", "mark", "halt")
IMAGE_NAME, MASK_NAME = "image", "mask.png"


def argv_for(fields: dict, image: Optional[pathlib.Path], mask: Optional[pathlib.Path]) -> list:
    """The command line's flags for the form ``fields`` (strings; '' = the preset's value),
    the image and mask files (None: the packaged image; a generated mask or none)."""
    get = lambda k: (fields.get(k) or "").strip()
    task = get("task")
    if task in cli_args.TASKS and task not in TASKS:
        raise InputError(f"--task {task}: not offered here (use the command line)")
    argv = [f"--task={task}"]
    degrade = get("degrade") in ("1", "on", "true")
    flags = {"preset": "preset", "iters": "iters", "seeds": "seeds"}
    if task == "denoise":  # the command line refuses it for an image not degraded on purpose
        flags["noise"] = "noise"
    if task == "superres":
        flags["scale"] = "scale"
    for field, flag in flags.items():
        if get(field):
            argv.append(f"--{flag}={get(field)}")
    if get("early_stop") not in ("", "off"):
        if get("early_stop") not in EARLY_STOP:
            raise InputError(f"--early-stop {get('early_stop')}: one of {', '.join(EARLY_STOP)}")
        argv.append(f"--early-stop={get('early_stop')}")
    if degrade:
        argv.append("--degrade")
    if task in MASKED:
        argv += _mask_flags(get("mask_source"), get("keep"), mask)
    elif mask is not None:
        raise InputError(f"--mask does not apply to --task {task}")
    if image is not None:
        argv.append(f"--image={image}")
    return argv


def _mask_flags(source: str, keep: str, mask: Optional[pathlib.Path]) -> list:
    if mask is not None:
        return [f"--mask={mask}"]
    if source in ("paint", "file"):
        raise InputError(
            "mask: none given; paint the region to fill, upload a mask or choose a generated one"
        )
    if source not in MASK_SOURCES:
        raise InputError(f"--mask-kind {source}: one of {', '.join(MASK_SOURCES[2:])}")
    return [f"--mask-kind={source}"] + ([f"--keep={keep}"] if source == "random" and keep else [])


def parse(argv: list) -> argparse.Namespace:
    """The command line's parser, raising ``InputError`` with its message instead of exiting."""
    ap = cli_args.parser()

    def error(message):
        raise InputError(message)

    ap.error = error
    return ap.parse_args(argv)


def check(argv: list, accelerator: bool) -> list:
    """Run the command line's checks on ``argv`` (flags, preset, run settings, the input files
    and the problem they make) without writing anything. Returns its notes and warnings."""
    from dipjax import engine, fit, sources
    from dipjax.presets import ParameterError

    args = parse(argv)
    try:
        preset, note = cli_args.resolve_preset(args, accelerator)
        engine.check_run_args(seed=args.seed, seeds=args.seeds)
        if args.seeds > fit.MAX_SEEDS:
            raise InputError(f"--seeds {args.seeds}: at most {fit.MAX_SEEDS}")
        problems, warned = sources.load_problems(
            preset,
            [args.image[0] if args.image else None],
            degrade=args.degrade,
            seed=args.seed,
            mask=args.mask,
        )
    except ParameterError as e:
        raise InputError(fit._flag_message(e)) from None
    return ([note] if note else []) + [n for p in problems for n in p.notes] + warned


def default_presets(accelerator: bool) -> dict:
    """Each task's preset when none is named, as the command line chooses it."""
    out = {}
    for task in TASKS:
        preset, _ = cli_args.resolve_preset(parse([f"--task={task}"]), accelerator)
        out[task] = preset.name
    return out
