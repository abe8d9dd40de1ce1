"""Command line: ``python -m dipjax.fit --task superres`` (or ``dipjax-fit``) restores an image.

Parsing and wiring only: flags become a preset (``dipjax.presets``) and problems
(``dipjax.sources``), ``dipjax.engine.run`` fits them, ``dipjax.outputs.RunWriter`` writes the
run folder. Errors in the user's input end with one line on stderr and status 2; an interrupted
run saves a checkpoint and ends with status 130.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from dipjax.io import InputError

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
MAX_SEEDS, WARN_SEEDS = 1024, 64


def main(argv=None, *, on_chunk=None, checkpointer=None) -> int:
    """The command; returns its exit status. ``on_chunk``, ``checkpointer``: for a caller that
    runs it inside its own process (``dipjax.app``), see ``run``."""
    start = time.perf_counter()
    from dipjax import cli_args, host_memory

    host_memory.keep_freed_memory()  # XLA's large CPU buffers reused, not faulted in every step
    from dipjax.timing import Timing, process_start_age

    # 'startup' covers the interpreter, the imports and the device's start, until 'prepare'
    # (inside a longer-lived process, only this call's own time).
    before = 0.0 if on_chunk else process_start_age() - (time.perf_counter() - start)
    timing = Timing(start, before=before)
    ap = cli_args.parser()
    args = ap.parse_args(argv)
    try:
        with timing("startup"):
            if cli_args.cache_command(args):
                return 0
        if args.resume:
            from dipjax import runfolder

            flags = (*runfolder.RUN_FLAGS, "out")
            runfolder.refuse_changes(args, {k: ap.get_default(k) for k in flags})
        return run(args, timing, on_chunk=on_chunk, checkpointer=checkpointer)
    except InputError as e:
        print(f"dipjax: error: {_flag_message(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dipjax: interrupted before the fit started; nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        print(
            f"dipjax: error: {e.strerror or e}{where}; the run stopped, its checkpoint (if "
            f"any) is kept",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except Exception as e:  # noqa: BLE001 - one line instead of a JAX traceback
        if os.environ.get("DIPJAX_DEBUG"):
            raise
        first = (str(e).strip().splitlines() or [""])[0][:300]
        print(
            f"dipjax: error: internal error ({type(e).__name__}: {first}); rerun with "
            f"DIPJAX_DEBUG=1 for the traceback",
            file=sys.stderr,
        )
        return EXIT_FAILED
    finally:
        sys.modules.get("dipjax.runfolder") and sys.modules["dipjax.runfolder"].release()


def _flag_message(e: InputError) -> str:
    from dipjax.presets import ParameterError

    if isinstance(e, ParameterError):
        return f"--{e.name.replace('_', '-')} {e.value}: {e.why}"
    return str(e)


def run(args, timing, *, on_chunk=None, checkpointer=None) -> int:
    """Run the parsed command. ``on_chunk(progress)``: also called after each chunk, True stops
    the run as Ctrl-C does (checkpoint kept, status 130); ``checkpointer``: the class that
    saves checkpoints (default ``dipjax.checkpoint.Checkpointer``)."""
    extra_on_chunk = on_chunk
    with timing("startup"):
        import jax

        from dipjax import cli_args, engine, runfolder, sources
        from dipjax.checkpoint import Checkpointer
        from dipjax.outputs import RunWriter, hyperparameters
        from dipjax.progress import ProgressBar, write_line
    resume = args.resume
    if resume:
        record = runfolder.read_record(resume)
        args = argparse.Namespace(
            **{**vars(args), **{k: record.get(k) for k in runfolder.RUN_FLAGS}}
        )
    with timing("startup"):
        if args.distributed:
            init_distributed(args)  # before anything starts the device
        jax.devices()
    say = lambda line: write_line(f"dipjax: {line}")
    with timing("prepare"):
        accelerator = jax.default_backend() != "cpu"
        preset, note = cli_args.resolve_preset(args, accelerator)
        engine.check_run_args(
            seed=args.seed,
            seeds=args.seeds,
            chunk=args.chunk,
            save_every=args.save_every,
            checkpoint_every=args.checkpoint_every,
            max_batch=args.max_batch,
        )
        if args.seeds > MAX_SEEDS:
            raise InputError(
                f"--seeds {args.seeds}: at most {MAX_SEEDS} (each seed is a whole "
                f"fit with its own output folder)"
            )
        paths, several = runfolder.expand_images(args.image)
        if (several or args.distributed) and (args.gt or args.flash):
            raise InputError(
                "--gt and --flash name one file; with several images use "
                "--degrade (each image is its own ground truth) or neither"
            )
        pid, nproc = jax.process_index(), jax.process_count()
        mine = list(range(pid, len(paths), nproc))
        problems, warned = sources.load_problems(
            preset,
            [paths[k] for k in mine],
            degrade=args.degrade,
            seed=args.seed,
            mask=args.mask,
            gt=args.gt,
            flash=args.flash,
            kernel=args.kernel,
        )
        if resume:
            # the id each process's checkpoint was written with (see below)
            out = runfolder.pathlib.Path(resume)
            run_id = record.get("run_id") if pid == 0 else "distributed"
            if nproc == 1:  # the processes of a distributed run share the folder
                runfolder.lock(out, "--resume")
        else:
            out = runfolder.prepare_out(args.out, args.overwrite, shared=args.distributed)
            run_id = runfolder.write_record(out, args, preset.name) if pid == 0 else "distributed"
        ckpt = (checkpointer or Checkpointer)(
            out, run_id, f"checkpoint.process{pid}" if nproc > 1 else "checkpoint"
        )
        if resume and not ckpt.exists():
            raise InputError(
                f"--resume {resume}: no checkpoint there (the run finished or "
                f"never got to its first step)"
            )
    for line in warned:
        say(f"warning: {line}")
    for line in ([note] if note else []) + [n for p in problems for n in p.notes]:
        say(line)
    if nproc > 1:
        say(f"process {pid} of {nproc}: {len(mine)} of {len(paths)} images")
    if len(problems) * args.seeds > WARN_SEEDS:
        say(
            f"warning: {len(problems) * args.seeds} fits of {preset.iters} iterations each: "
            f"this takes about {len(problems) * args.seeds} times as long as one fit"
        )
    seeds = list(range(args.seed, args.seed + args.seeds))
    names = runfolder.unique_names(paths)
    writer = RunWriter(
        out,
        problems,
        [names[k] for k in mine],
        [paths[k] for k in mine],
        seeds,
        {
            "task": preset.task,
            "preset": preset.name,
            "hyperparameters": hyperparameters(preset),
            "run_id": run_id,
            "process": pid,
            "processes": nproc,
            "inputs": {
                k: getattr(args, k) for k in ("image", "mask", "gt", "flash", "kernel", "degrade")
            },
        },
        nested=several or args.distributed,
    )
    bar = ProgressBar(preset.iters, disable=args.quiet)

    def on_chunk(progress):  # timed as the engine's 'host' work
        bar.update(progress)
        writer.on_chunk(progress)
        return bool(extra_on_chunk and extra_on_chunk(progress))

    def on_fit(result):
        with timing("outputs"):
            writer.on_fit(result)

    try:
        result = engine.run(
            problems,
            preset,
            seeds,
            strategy=args.strategy,
            chunk=args.chunk,
            max_batch=args.max_batch,
            save_every=args.save_every,
            checkpoint_every=args.checkpoint_every,
            checkpointer=ckpt,
            on_chunk=on_chunk,
            on_fit=on_fit,
            say=say,
            handle_signals=True,
            timing=timing,
        )
    finally:
        bar.close()
    with timing("outputs"):
        writer.write_run(result, timing.summary(), f".process{pid}" if nproc > 1 else "")
        if nproc > 1 and pid == 0:
            from dipjax.outputs import gather_tables

            gather_tables(out, nproc)
    with timing("checkpoint"):
        if not result.interrupted:
            ckpt.remove()
    if result.interrupted:
        print(
            f"dipjax: interrupted; outputs so far and a checkpoint are in {out}/; continue "
            f"with: python -m dipjax.fit --resume {out}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    lost = [f for f in result.fits if f.diverged]
    if lost:
        print(
            f"dipjax: error: {len(lost)} of {len(result.fits)} fits diverged beyond recovery "
            f"(the loss stayed NaN/Inf although the learning rate was halved); their outputs "
            f"are not results: lower --lr",
            file=sys.stderr,
        )
        return EXIT_FAILED
    from dipjax.progress import final_lines

    for line in final_lines(out, result, timing.summary()):
        say(line)
    return 0


def init_distributed(args) -> None:
    """Join the multi-process run (JAX's own runtime; unset flags come from the cluster
    environment JAX understands, e.g. SLURM)."""
    import jax

    kw = {
        k: v
        for k, v in (
            ("coordinator_address", args.coordinator),
            ("num_processes", args.num_processes),
            ("process_id", args.process_id),
        )
        if v is not None
    }
    try:
        jax.distributed.initialize(**kw)
    except (RuntimeError, ValueError) as e:
        raise InputError(f"--distributed: cannot join the run ({str(e).splitlines()[0]})") from None


if __name__ == "__main__":
    sys.exit(main())
