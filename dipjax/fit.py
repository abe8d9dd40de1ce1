"""Command line: ``python -m dipjax.fit --task superres`` restores an image and writes outputs.

Outputs in --out: output.png (last), output_avg.png (moving average), degraded.png (the input),
comparison.png, metrics.jsonl, curves.png, summary.json and, with --save-every,
snapshots/iter_NNNNNN.png. Errors in the user's input end with one line on stderr and status 2.
"""
from __future__ import annotations

import argparse
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
    a("--seeds", type=int, default=1, help="fit K seeds (--seed, --seed+1, ...) and write their "
      "mean and a per-pixel std map")
    a("--strategy", choices=("auto", "vmap", "sequential"), default="auto",
      help="how --seeds K fits run: one vmapped step, or one after another (auto: sequential "
      "on a CPU, where vmapped convolutions are slow)")
    a("--out", default="dipjax-out", help="output folder")
    a("--overwrite", action="store_true", help="write into an existing, non-empty --out")
    a("--save-every", type=int, default=0, help="also save the output every N iterations")
    a("--checkpoint-every", type=int, default=500, help="save a checkpoint every N iterations "
      "(0: never); Ctrl-C and SIGTERM always save one")
    a("--resume", metavar="DIR", help="continue the interrupted run in DIR (its --out); other "
      "flags are taken from DIR/run.json")
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
              ("checkpoint_every", lambda v: v >= 0, "must be >= 0"),
              ("chunk", lambda v: v >= 0, "must be >= 0"),
              ("seeds", lambda v: v >= 1, "must be >= 1")]
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


RUN_FLAGS = ("task", "preset", "image", "mask", "mask_kind", "keep", "flash", "gt", "degrade",
             "noise", "sigma", "density", "quality", "scale", "iters", "lr", "reg_noise_std",
             "init_style", "seed", "seeds", "strategy", "save_every", "checkpoint_every", "chunk")


def resumed_args(args):
    """The arguments of the run being resumed, from DIR/run.json."""
    folder = pathlib.Path(args.resume)
    run_file = folder / "run.json"
    if not run_file.is_file():
        raise UsageError(f"--resume {folder}: no run.json there (not a dipjax output folder)")
    saved = json.loads(run_file.read_text())
    merged = argparse.Namespace(**{**vars(args), **{k: saved.get(k) for k in RUN_FLAGS}})
    merged.out, merged.overwrite = str(folder), True
    return merged


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(resumed_args(args) if args.resume else args)
    except InputError as e:
        print(f"dipjax: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dipjax: interrupted before the fit started; nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED


def run(args) -> int:
    import jax

    from dipjax import api, checkpoint, io, report

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
    resume = None
    if args.resume:
        if checkpoint.latest(args.resume) is None:
            raise UsageError(f"--resume {args.resume}: no checkpoint there")
        resume = checkpoint.restore(args.resume, api.initial_state(problem, preset, args.seed))
        out = pathlib.Path(args.resume)
    else:
        out = prepare_out(args.out, args.overwrite)
        io.atomic_write_bytes(out / "run.json", json.dumps(
            {k: getattr(args, k) for k in RUN_FLAGS}, indent=1).encode())
    say = (lambda *a: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    for w in caught:
        say(f"dipjax: warning: {w.message}")
    for line in ([note] if note else []) + problem.notes:
        say(f"dipjax: {line}")
    if resume:
        say(f"dipjax: resuming {out} at iteration {len(resume[1])}")

    if args.seeds > 1:
        return run_ensemble(args, problem, preset, out, say)

    stop = {"flag": False}
    handler = lambda *_: stop.update(flag=True)
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    bar = report.progress(preset.iters, disable=args.quiet)
    bar.update(len(resume[1]) if resume else 0)

    def on_chunk(done, total, last):
        bar.update(done - bar.n)
        bar.set_postfix(report.postfix(last), refresh=False)
        return stop["flag"]

    try:
        res = api.fit(problem, preset, seed=args.seed, chunk=args.chunk,
                      save_every=args.save_every, checkpoint_every=args.checkpoint_every,
                      on_chunk=on_chunk, resume=resume,
                      on_checkpoint=lambda st, h: checkpoint.save(out, st, h))
    finally:
        bar.close()
        for sig, h in previous.items():
            signal.signal(sig, h)
    if res.interrupted:
        checkpoint.save(out, res.state, res.history)
    report.write_outputs(out, res, args)
    if res.interrupted:
        print(f"dipjax: interrupted at iteration {len(res.history)}; outputs and a checkpoint "
              f"are in {out}/; continue with: python -m dipjax.fit --resume {out}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    say(f"dipjax: wrote {out}/ " + report.final_line(res))
    return 0


def run_ensemble(args, problem, preset, out, say) -> int:
    from dipjax import ensemble, report

    seeds = list(range(args.seed, args.seed + args.seeds))
    bar = report.progress(preset.iters * (len(seeds) if args.strategy != "vmap" else 1),
                          disable=args.quiet)
    offset = {"base": 0, "last": 0}

    def on_chunk(done, total, last):
        if done < offset["last"]:  # the next seed started (sequential strategy)
            offset["base"] += total
        offset["last"] = done
        bar.update(offset["base"] + done - bar.n)
        return False

    try:
        res = ensemble.fit_ensemble(problem, preset, seeds, strategy=args.strategy,
                                    chunk=args.chunk, on_chunk=on_chunk)
    finally:
        bar.close()
    report.write_ensemble_outputs(out, res, problem, preset, args)
    f = res.final
    line = f"{len(seeds)} seeds ({res.strategy})"
    if "psnr_mean" in f:
        line += (f": mean of seeds {f['psnr_mean']:.2f} dB, single seeds "
                 f"{f['psnr_single_mean']:.2f} dB on average")
    say(f"dipjax: wrote {out}/ {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
