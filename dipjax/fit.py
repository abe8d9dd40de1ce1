"""Command line: ``python -m dipjax.fit --task superres`` restores an image and writes outputs.

Outputs in --out: output.png (last), output_avg.png (moving average), degraded.png (the input),
comparison.png, metrics.jsonl, curves.png, summary.json and, with --save-every,
snapshots/iter_NNNNNN.png. Errors in the user's input end with one line on stderr and status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import sys
import warnings

from dipjax import tasks
from dipjax.io import InputError
from dipjax.ops.blur import parse_blur
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
    a("--image", nargs="+", help="input image(s): noisy / low-resolution / with holes / "
      "no-flash photo; several files, a folder or a quoted glob fit them all, one sub-folder "
      "of --out each (default: the packaged 256x256 image, degraded)")
    a("--mask", help="inpaint/restore: mask image, white = known pixel (thresholded at 0.5)")
    a("--mask-kind", choices=tasks.MASK_KINDS[1:], help="inpaint/restore: generate a mask "
      "instead of --mask (default: the preset's)")
    a("--keep", type=float, help="fraction of pixels kept by --mask-kind random")
    a("--flash", help="flash-no-flash: the flash photo, fed to the net")
    a("--blur", help="deblur: the blur, gauss:SIGMA in pixels (default: the preset's, gauss:2)")
    a("--kernel", help="deblur: a blur kernel image instead of --blur (scaled to sum 1)")
    a("--gt", help="clean image to measure PSNR against")
    a("--degrade", action="store_true", help="--image is clean: degrade it first (noise, "
      "downscale, mask) and measure PSNR against it")
    a("--noise", choices=tasks.NOISES, help="denoise with --degrade: noise kind")
    a("--sigma", type=float, help="denoise/deblur: Gaussian noise std in 0-255 units added "
      "with --degrade (default: the preset's, 25 for denoise, 2 for deblur)")
    a("--density", type=float, help="denoise, saltpepper: fraction of pixels hit")
    a("--quality", type=int, help="denoise, jpeg: JPEG quality 1-95")
    a("--scale", type=int, choices=(2, 4, 8), help="superres: factor (default: the preset's)")
    a("--iters", type=int, help="iterations (default: the preset's)")
    a("--lr", type=float, help="Adam learning rate (default: the preset's)")
    a("--reg-noise-std", type=float, help="std of the per-iteration input perturbation")
    a("--tv-weight", type=float, help="add this weight x the output's total variation to the "
      "loss (DIP-TV; default 0)")
    a("--early-stop", nargs="?", const="mark", choices=("off", "mark", "halt"),
      help="detect the best iteration without ground truth (ES-WMV) and save output_es.png "
      "there; 'mark' (the flag alone) goes on to --iters, 'halt' stops there")
    a("--es-window", type=int, help="--early-stop: outputs in the variance window (default 100)")
    a("--es-patience", type=int, help="--early-stop: iterations without a new variance minimum "
      "before it fires (default 500)")
    a("--init-style", choices=("modern", "legacy"), help="weight init: modern torch (BN scale "
      "1) or torch 0.4 (BN scale U[0,1))")
    a("--seed", type=int, default=0, help="random seed (weights, input noise, degradation)")
    a("--seeds", type=int, default=1, help="fit K seeds (--seed, --seed+1, ...) and write their "
      "mean and a per-pixel std map")
    a("--strategy", choices=("auto", "vmap", "sequential", "measure"), default="auto",
      help="how several fits (--seeds, several images) run: one vmapped step, one after "
      "another, or whichever a timed chunk of each finds faster (auto: sequential on a CPU, "
      "where vmapped convolutions are slow, measure elsewhere)")
    a("--max-batch", type=int, default=0, help="most fits vmapped at once (default: as many "
      "as the memory estimate allows)")
    a("--distributed", action="store_true", help="one process of a multi-process run "
      "(jax.distributed): the images are split over the processes; process 0 writes the "
      "combined metrics table")
    a("--coordinator", help="--distributed: coordinator host:port (default: from the cluster "
      "environment, e.g. SLURM)")
    a("--num-processes", type=int, help="--distributed: number of processes")
    a("--process-id", type=int, help="--distributed: this process's index")
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
    if args.blur is not None and args.kernel is not None:
        raise UsageError("give --blur or --kernel, not both")
    for flag, allowed in (("scale", ("superres",)), ("sigma", ("denoise", "deblur")),
                          ("noise", ("denoise",)), ("density", ("denoise",)),
                          ("quality", ("denoise",)), ("mask", ("inpaint", "restore")),
                          ("mask_kind", ("inpaint", "restore")), ("keep", ("inpaint", "restore")),
                          ("flash", ("flash-no-flash",)), ("blur", ("deblur",)),
                          ("kernel", ("deblur",))):
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
              ("seeds", lambda v: v >= 1, "must be >= 1"),
              ("tv_weight", lambda v: v >= 0, "must be >= 0"),
              ("es_window", lambda v: v >= 2, "must be >= 2"),
              ("es_patience", lambda v: v >= 1, "must be >= 1"),
              ("max_batch", lambda v: v >= 0, "must be >= 0")]
    for flag, ok, why in checks:
        v = getattr(args, flag)
        if v is not None and not ok(v):
            raise UsageError(f"--{flag.replace('_', '-')} {v}: {why}")
    p = p.replace(iters=args.iters, lr=args.lr, reg_noise_std=args.reg_noise_std,
                  init_style=args.init_style, scale=args.scale, sigma=args.sigma,
                  noise=args.noise, density=args.density, quality=args.quality,
                  mask_kind=args.mask_kind, keep=args.keep, blur=args.blur,
                  tv_weight=args.tv_weight, early_stop=args.early_stop,
                  es_window=args.es_window, es_patience=args.es_patience)
    if p.task == "deblur":
        try:
            parse_blur(p.blur)
        except ValueError as e:
            raise UsageError(f"--blur: {e}") from None
    return p, note


def prepare_out(path: str, overwrite: bool, shared: bool = False) -> pathlib.Path:
    """The output folder, created and probed for writing. ``shared``: other processes of a
    distributed run write there too, so an existing folder is not refused."""
    out = pathlib.Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite and not shared:
        raise UsageError(f"--out {out}: folder exists and is not empty (add --overwrite)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".dipjax-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    return out


RUN_FLAGS = ("task", "preset", "image", "mask", "mask_kind", "keep", "flash", "blur", "kernel",
             "gt", "degrade", "noise", "sigma", "density", "quality", "scale", "iters", "lr",
             "reg_noise_std", "tv_weight", "early_stop", "es_window", "es_patience",
             "init_style", "seed", "seeds", "strategy", "max_batch", "save_every",
             "checkpoint_every", "chunk")


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

    from dipjax import api, checkpoint, io, many, report

    if args.distributed:
        init_distributed(args)
    accelerator = jax.default_backend() != "cpu"
    preset, note = resolve_preset(args, accelerator)
    paths, several = many.expand_images(args.image)
    if several or args.distributed:
        return run_many(args, paths, preset, note)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load = lambda p: io.load_image(p) if p else None
        image, mask, gt, flash, kernel = (load(paths[0]), load(args.mask), load(args.gt),
                                          load(args.flash), load(args.kernel))
        if mask is not None:
            mask = tasks.binarize_mask(mask, args.mask)
        if kernel is not None:
            kernel = tasks.blur_kernel(kernel=kernel, path=args.kernel)
    problem = api.prepare(preset.task, preset, image, mask=mask, gt=gt, flash=flash,
                          kernel=kernel, degrade=args.degrade, seed=args.seed)
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
    if res.early_stop is not None:
        say("dipjax: " + report.early_stop_line(res))
    return 0


def run_ensemble(args, problem, preset, out, say) -> int:
    from dipjax import ensemble, report

    seeds = list(range(args.seed, args.seed + args.seeds))
    bar, on_chunk = batch_progress(preset, args.quiet, {"flag": False})
    try:
        res = ensemble.fit_ensemble(problem, preset, seeds, strategy=args.strategy,
                                    chunk=args.chunk, on_chunk=on_chunk,
                                    max_batch=args.max_batch,
                                    say=lambda m: say(f"dipjax: {m}"))
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


def batch_progress(preset, quiet: bool, stop: dict):
    """A progress bar over one batch of fits (reset when the next batch starts) and its
    ``on_chunk``, which returns ``stop['flag']``."""
    from dipjax import report

    bar = report.progress(preset.iters, disable=quiet)
    last = {"done": 0, "batch": 1}

    def on_chunk(done, total, metrics):
        if done <= last["done"]:
            last["batch"] += 1
            bar.reset()
        last["done"] = done
        bar.set_description(f"batch {last['batch']}", refresh=False)
        bar.update(done - bar.n)
        bar.set_postfix(report.postfix(metrics), refresh=False)
        return stop["flag"]

    return bar, on_chunk


def init_distributed(args) -> None:
    """Join the multi-process run (JAX's own runtime; unset flags come from the cluster
    environment JAX understands, e.g. SLURM)."""
    import jax

    kw = {k: v for k, v in (("coordinator_address", args.coordinator),
                            ("num_processes", args.num_processes),
                            ("process_id", args.process_id)) if v is not None}
    try:
        jax.distributed.initialize(**kw)
    except (RuntimeError, ValueError) as e:
        raise UsageError(f"--distributed: cannot join the run ({str(e).splitlines()[0]})") \
            from None


def run_many(args, paths, preset, note) -> int:
    """Fit every image (once per seed), this process's share of them when distributed."""
    import jax

    from dipjax import api, batch, ensemble, io, many, report

    if args.gt or args.flash:
        raise UsageError("--gt and --flash name one file; with several images use --degrade "
                         "(each image is its own ground truth) or neither")
    if args.resume:
        raise UsageError("--resume continues single-image runs only")
    say = (lambda *a: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    pid, nproc = jax.process_index(), jax.process_count()
    names = many.unique_names([p or "astronaut" for p in paths])
    mine = list(range(pid, len(paths), nproc))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mask = tasks.binarize_mask(io.load_image(args.mask), args.mask) if args.mask else None
        kernel = (tasks.blur_kernel(kernel=io.load_image(args.kernel), path=args.kernel)
                  if args.kernel else None)
        problems = []
        for k in mine:
            try:
                image = io.load_image(paths[k]) if paths[k] else None
                prob = api.prepare(preset.task, preset, image, mask=mask, kernel=kernel,
                                   degrade=args.degrade, seed=args.seed)
                api.build(prob, preset, args.seed)
            except InputError as e:
                msg = str(e)
                raise InputError(msg if paths[k] and str(paths[k]) in msg
                                 else f"{paths[k]}: {msg}") from None
            problems.append(prob)
    out = prepare_out(args.out, args.overwrite, shared=args.distributed)
    if pid == 0:
        io.atomic_write_bytes(out / "run.json", json.dumps(
            {k: getattr(args, k) for k in RUN_FLAGS}, indent=1).encode())
    for w in caught:
        say(f"dipjax: warning: {w.message}")
    if note:
        say(f"dipjax: {note}")
    if nproc > 1:
        say(f"dipjax: process {pid} of {nproc}: {len(mine)} of {len(paths)} images")
    seeds = list(range(args.seed, args.seed + args.seeds))
    rows, pending = [], {}

    def on_batch(got):
        for o in got:
            pending.setdefault(o.problem, []).append(o)
            if len(pending[o.problem]) < len(seeds):
                continue
            fits = sorted(pending.pop(o.problem), key=lambda f: f.seed)
            k = mine[o.problem]
            folder = out / names[k]
            folder.mkdir(exist_ok=True)
            prob = problems[o.problem]
            if len(seeds) == 1:
                f = fits[0]
                report.write_outputs(folder, api.FitResult(
                    f.output, f.output_avg, f.history, f.final, f.compile_s, f.step_s, preset,
                    f.seed, prob, interrupted=f.interrupted, early_stop=f.early_stop), args)
            else:
                ens = ensemble.combine(prob, fits, batch.BatchReport(
                    strategy, [], [], 1, fits[0].compile_s, fits[0].step_s, []))
                report.write_ensemble_outputs(folder, ens, prob, preset, args)
            rows.extend(many.rows_for(names[k], paths[k], prob, fits))

    stop = {"flag": False}
    handler = lambda *_: stop.update(flag=True)
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    bar, on_chunk = batch_progress(preset, args.quiet, stop)

    strategy = batch.resolve_strategy(args.strategy)
    try:
        fits, rep = batch.fit_many(problems, preset, seeds, strategy=strategy, chunk=args.chunk,
                                   max_batch=args.max_batch, on_chunk=on_chunk,
                                   on_batch=on_batch, say=lambda m: say(f"dipjax: {m}"))
    finally:
        bar.close()
        for sig, h in previous.items():
            signal.signal(sig, h)
    summary = {"task": preset.task, "preset": preset.name,
               "hyperparameters": report.hyperparameters(preset), "seeds": seeds,
               "images": [str(p) for p in paths], "strategy": rep.strategy,
               "groups": [[names[mine[i]] for i in g] for g in rep.groups],
               "batches": rep.batches, "devices": rep.devices, "process": pid,
               "processes": nproc, "compile_s": rep.compile_s,
               "step_s_per_fit": rep.step_s, "notes": rep.notes}
    if nproc > 1:
        io.atomic_write_bytes(out / f"metrics.part{pid}.json", json.dumps(rows).encode())
        io.atomic_write_bytes(out / f"summary.process{pid}.json",
                              report._json_bytes(summary))
        if pid == 0:
            rows = many.gather_parts(out, nproc)
    if pid == 0:
        rows.sort(key=lambda r: (r["image"], str(r["seed"])))
        many.write_table(out, rows)
        if nproc == 1:
            io.atomic_write_bytes(out / "summary.json", report._json_bytes(summary))
    if any(f.interrupted for f in fits) or len(fits) < len(problems) * len(seeds):
        print(f"dipjax: interrupted; the outputs of the {len(rows)} fits done so far are in "
              f"{out}/ (a many-image run cannot be resumed: rerun the rest)", file=sys.stderr)
        return EXIT_INTERRUPTED
    say(f"dipjax: wrote {out}/ ({len(problems)} images x {len(seeds)} seeds, "
        f"{rep.strategy}, {len(rep.groups)} shape groups); metrics in {out}/metrics.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
