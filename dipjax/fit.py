"""Command line: ``python -m dipjax.fit --task superres`` restores an image and writes outputs.

Outputs in --out: output.png (last), output_avg.png (moving average), degraded.png (the input),
comparison.png, metrics.jsonl, curves.png, summary.json and, with --save-every,
snapshots/iter_NNNNNN.png. Errors in the user's input end with one line on stderr and status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import signal
import sys
import warnings

from dipjax import tasks
from dipjax.io import InputError
from dipjax.presets import FAST_DEFAULT, PAPER_DEFAULT, PRESETS

EXIT_USAGE, EXIT_INTERRUPTED = 2, 130


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m dipjax.fit", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Restore an image with Deep Image Prior. With only --task, runs on the "
                    "image that ships with dipjax, degraded on purpose.")
    a = ap.add_argument
    a("--task", choices=tasks.TASKS, help="what to restore (default: the preset's task)")
    a("--preset", choices=sorted(PRESETS), help="recipe; default: the paper's on an "
      "accelerator, the task's '-fast' one on a CPU")
    a("--image", help="input image: noisy / low-resolution / with holes / no-flash photo "
      "(default: the packaged 256x256 image, degraded)")
    a("--mask", help="inpaint/restore: mask image, white = known pixel (thresholded at 0.5)")
    a("--mask-kind", choices=tasks.MASK_KINDS[1:], help="inpaint/restore: generate a mask "
      "instead of --mask (default: the preset's)")
    a("--keep", type=float, help="fraction of pixels kept by --mask-kind random")
    a("--flash", help="flash-no-flash: the flash photo, fed to the net")
    a("--gt", help="clean image to measure PSNR against")
    a("--degrade", action="store_true", help="--image is clean: degrade it first (noise, "
      "downscale, mask) and measure PSNR against it")
    a("--noise", choices=tasks.NOISES, help="denoise with --degrade: noise kind")
    a("--sigma", type=float, help="denoise: Gaussian noise std in 0-255 units (default 25)")
    a("--density", type=float, help="denoise, saltpepper: fraction of pixels hit")
    a("--quality", type=int, help="denoise, jpeg: JPEG quality 1-95")
    a("--scale", type=int, choices=(2, 4, 8), help="superres: factor (default: the preset's)")
    a("--iters", type=int, help="iterations (default: the preset's)")
    a("--lr", type=float, help="Adam learning rate (default: the preset's)")
    a("--reg-noise-std", type=float, help="std of the per-iteration input perturbation")
    a("--init-style", choices=("modern", "legacy"), help="weight init: modern torch (BN scale "
      "1) or torch 0.4 (BN scale U[0,1))")
    a("--seed", type=int, default=0, help="random seed (weights, input noise, degradation)")
    a("--out", default="dipjax-out", help="output folder")
    a("--overwrite", action="store_true", help="write into an existing, non-empty --out")
    a("--save-every", type=int, default=0, help="also save the output every N iterations")
    a("--chunk", type=int, default=0, help="steps per host call (default: 5 on CPU, 50 else)")
    a("--quiet", action="store_true", help="no progress bar")
    return ap


class UsageError(InputError):
    pass


def resolve_preset(args, accelerator: bool):
    """The preset named or defaulted, with the flags' overrides. Returns (preset, note)."""
    note = None
    if args.preset:
        p = PRESETS[args.preset]
        if args.task and args.task != p.task:
            raise UsageError(f"--preset {args.preset} is for --task {p.task}, not {args.task}")
    elif args.task:
        if args.task == "superres" and args.scale == 8 and accelerator:
            name = "superres-x8"
        else:
            name = (PAPER_DEFAULT if accelerator else FAST_DEFAULT)[args.task]
        p = PRESETS[name]
        if not accelerator:
            paper = PAPER_DEFAULT[args.task]
            note = (f"no accelerator found: running the CPU preset '{name}' ({p.iters} iters); "
                    f"for the paper's recipe add --preset {paper}")
    else:
        raise UsageError("give --task (one of " + ", ".join(tasks.TASKS) + ") or --preset")
    task = p.task
    for flag, allowed in (("scale", ("superres",)), ("sigma", ("denoise",)),
                          ("noise", ("denoise",)), ("density", ("denoise",)),
                          ("quality", ("denoise",)), ("mask", ("inpaint", "restore")),
                          ("mask_kind", ("inpaint", "restore")), ("keep", ("inpaint", "restore")),
                          ("flash", ("flash-no-flash",))):
        if getattr(args, flag) is not None and task not in allowed:
            raise UsageError(f"--{flag.replace('_', '-')} does not apply to --task {task}")
    checks = [("iters", lambda v: v > 0, "must be > 0"), ("lr", lambda v: v > 0, "must be > 0"),
              ("sigma", lambda v: v >= 0, "must be >= 0"),
              ("reg_noise_std", lambda v: v >= 0, "must be >= 0"),
              ("keep", lambda v: 0 < v <= 1, "must be in (0, 1]"),
              ("density", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
              ("quality", lambda v: 1 <= v <= 95, "must be in 1..95"),
              ("save_every", lambda v: v >= 0, "must be >= 0"),
              ("chunk", lambda v: v >= 0, "must be >= 0")]
    for flag, ok, why in checks:
        v = getattr(args, flag)
        if v is not None and not ok(v):
            raise UsageError(f"--{flag.replace('_', '-')} {v}: {why}")
    p = p.replace(iters=args.iters, lr=args.lr, reg_noise_std=args.reg_noise_std,
                  init_style=args.init_style, scale=args.scale, sigma=args.sigma,
                  noise=args.noise, density=args.density, quality=args.quality,
                  mask_kind=args.mask_kind, keep=args.keep)
    return p, note


def prepare_out(path: str, overwrite: bool) -> pathlib.Path:
    out = pathlib.Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"--out {out}: folder exists and is not empty (add --overwrite)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".dipjax-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    return out


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except InputError as e:
        print(f"dipjax: error: {e}", file=sys.stderr)
        return EXIT_USAGE


def run(args) -> int:
    import jax

    from dipjax import api, io, report

    accelerator = jax.default_backend() != "cpu"
    preset, note = resolve_preset(args, accelerator)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load = lambda p: io.load_image(p) if p else None
        image, mask, gt, flash = (load(args.image), load(args.mask), load(args.gt),
                                  load(args.flash))
    if mask is not None:
        mask = tasks.binarize_mask(mask, args.mask)
    problem = api.prepare(preset.task, preset, image, mask=mask, gt=gt, flash=flash,
                          degrade=args.degrade, seed=args.seed)
    api.build(problem, preset, args.seed)  # size errors before any output is written
    out = prepare_out(args.out, args.overwrite)
    say = (lambda *a: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    for w in caught:
        say(f"dipjax: warning: {w.message}")
    for line in ([note] if note else []) + problem.notes:
        say(f"dipjax: {line}")

    stop = {"flag": False}
    previous = signal.signal(signal.SIGINT, lambda *_: stop.update(flag=True))
    bar = report.progress(preset.iters, disable=args.quiet)

    def on_chunk(done, total, last):
        bar.update(done - bar.n)
        bar.set_postfix(report.postfix(last), refresh=False)
        return stop["flag"]

    try:
        res = api.fit(problem, preset, seed=args.seed, chunk=args.chunk,
                      save_every=args.save_every, on_chunk=on_chunk)
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous)
    report.write_outputs(out, res, args)
    say(f"dipjax: wrote {out}/ " + report.final_line(res))
    return EXIT_INTERRUPTED if res.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
