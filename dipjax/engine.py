"""The one fit engine. Every run (one fit, K seeds, many images; vmapped or sequential; sharded
over devices; one process of a distributed run) goes through ``run``, which plans batches of
fits (``dipjax.plan``), builds each (``dipjax.build``) and drives its chunks of steps
(``dipjax.loop``): schedule, history, progress callback, snapshots, checkpoints, resume,
signal-safe stop, early-stop halt, final render and metrics.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import statistics
import threading
from typing import Callable, Optional, Sequence

import jax
import numpy as np

from dipjax import build
from dipjax import plan as planning
from dipjax.loop import BatchLoop
from dipjax.results import FitResult, RunResult, final_metrics
from dipjax.step import default_chunk
from dipjax.timing import Timing


@dataclasses.dataclass
class Progress:
    """Passed to ``on_chunk`` after each chunk: batch number (from 1) of ``batches``, iterations
    ``done`` of ``total``, the batch's fits, and the history rows each fit got in this chunk."""

    batch: int
    batches: int
    done: int
    total: int
    fits: list
    rows: dict

    @property
    def last(self) -> dict:
        """The first fit's newest row (for progress bars)."""
        return self.rows[self.fits[0]][-1]


STOPPING = "stopping once the compile or step under way ends; the outputs so far follow"


class _Stop:
    """A flag set by SIGINT/SIGTERM (when handled) or by ``on_chunk`` returning True.

    Python runs a signal's handler only when the main thread returns from C, which an XLA
    compile does after tens of seconds; so the first signal is also announced through ``say``
    at once, by a thread that waits on the signal wakeup fd (written by the C-level handler)."""

    def __init__(self, handle_signals: bool, say=None):
        self.flag, self.say, self.announced = False, say, False
        self._previous, self._wakeup = {}, None
        if not (handle_signals and threading.current_thread() is threading.main_thread()):
            return
        if say is not None:  # first: should it fail, no handler is left installed
            r, w = os.pipe()
            os.set_blocking(w, False)
            try:
                self._wakeup = (w, signal.set_wakeup_fd(w, warn_on_full_buffer=False))
            except BaseException:
                os.close(r)
                os.close(w)
                raise
            threading.Thread(target=self._announce, args=(r,), daemon=True).start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._set)

    def _set(self, *_):
        self.flag = True

    def _announce(self, r: int) -> None:
        wanted = {int(signal.SIGINT), int(signal.SIGTERM)}
        try:
            while data := os.read(r, 64):  # b"" once restore() closes the write end
                if not self.announced and wanted & set(data):
                    self.announced = True
                    try:
                        self.say(STOPPING)
                    except Exception:  # noqa: BLE001 - a closed stderr must not stop the stop
                        pass
        finally:
            os.close(r)

    def restore(self):
        if self._wakeup is not None:  # first: a signal after the handlers go may raise
            w, previous = self._wakeup
            self._wakeup = None
            signal.set_wakeup_fd(previous)
            os.close(w)
        while self._previous:
            sig, handler = self._previous.popitem()
            signal.signal(sig, handler)


MAX_SEED = 2**31 - 1
MAX_CHUNK = 10_000


def check_run_args(
    *,
    seed: int = 0,
    seeds: int = 1,
    chunk: int = 0,
    save_every: int = 0,
    checkpoint_every: int = 0,
    max_batch: int = 0,
) -> None:
    """Refuse run settings out of range (ParameterError naming the parameter)."""
    from dipjax.presets import ParameterError

    for name, value, low in (
        ("seed", seed, 0),
        ("seeds", seeds, 1),
        ("chunk", chunk, 0),
        ("save_every", save_every, 0),
        ("checkpoint_every", checkpoint_every, 0),
        ("max_batch", max_batch, 0),
    ):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ParameterError(name, value, f"must be an integer >= {low}")
    if chunk > MAX_CHUNK:  # a CPU step unrolls its chunk: each step is compiled
        raise ParameterError("chunk", chunk, f"must be at most {MAX_CHUNK}")
    if seed + seeds - 1 > MAX_SEED:
        last = f"with {seeds} seeds the last is {seed + seeds - 1}, " if seeds > 1 else ""
        raise ParameterError("seed", seed, f"{last}over {MAX_SEED}")


def fit_problem(problem, preset, seed: int = 0, **kw) -> FitResult:
    """One fit of ``problem`` (see ``run`` for the keyword arguments)."""
    return run([problem], preset, [seed], **kw).fits[0]


def run(
    problems: Sequence,
    preset,
    seeds: Sequence[int] = (0,),
    *,
    strategy: str = "auto",
    chunk: int = 0,
    max_batch: int = 0,
    devices=None,
    save_every: int = 0,
    checkpoint_every: int = 0,
    checkpointer=None,
    on_chunk: Optional[Callable] = None,
    on_fit: Optional[Callable] = None,
    say: Optional[Callable] = None,
    handle_signals: bool = False,
    timing: Optional[Timing] = None,
    pipeline: bool = True,
) -> RunResult:
    """Fit every problem once per seed with ``preset`` (a Preset or a preset's name).

    ``strategy``: 'auto' | 'vmap' | 'sequential' | 'measure' (``dipjax.plan``); ``max_batch``:
    most fits vmapped at once; ``devices``: where vmapped fits are sharded (default: all local).
    ``chunk``: steps per host call (default 1 on a CPU, 50 elsewhere). ``save_every``: keep the
    output every N iterations (``FitResult.snapshots``). ``checkpointer``
    (``dipjax.checkpoint.Checkpointer``): save the batch in flight every ``checkpoint_every``
    iterations and when stopped, keep each finished fit, and resume from what it holds (the
    result is then bit-identical to an uninterrupted run). ``on_chunk(Progress)`` after every
    chunk (True stops the run); ``on_fit(FitResult)`` as each fit ends (also an interrupted
    one, and the fits a resumed run found finished); ``say(line)`` for notes.
    ``handle_signals``: SIGINT/SIGTERM stop the run at the end of the current chunk.
    ``pipeline=False`` reads every chunk's metrics before dispatching the next (same results,
    the device idles meanwhile).
    """
    if isinstance(preset, str):
        from dipjax.presets import get_preset

        preset = get_preset(preset)
    for s in seeds:
        check_run_args(seed=s)
    check_run_args(
        chunk=chunk, save_every=save_every, checkpoint_every=checkpoint_every, max_batch=max_batch
    )
    timing = timing or Timing()
    chunk = max(1, min(chunk or default_chunk(), preset.iters))
    fits = [(i, s) for i in range(len(problems)) for s in seeds]
    results, current = {}, None
    if checkpointer is not None:
        with timing("checkpoint"):
            current = checkpointer.current()  # first: it refuses another run's or format's
            for key, (arrays, record) in checkpointer.finished().items():
                results[key] = _loaded(problems, preset, key, arrays, record)
                on_fit and on_fit(results[key])
            if current and all(tuple(f) in results for f in current["fits"]):
                current = None
    caches: dict = {}
    todo = [f for f in fits if f not in results and not (current and f in current["fits"])]
    with timing("prepare"):
        groups, batches, chosen, notes = planning.plan(
            problems,
            preset,
            todo,
            strategy,
            max_batch=max_batch,
            devices=devices,
            chunk=chunk,
            caches=caches,
            say=say,
        )
    if current:
        g = next(k for k, grp in enumerate(groups) if current["fits"][0][0] in grp)
        batches.insert(0, planning.Batch(g, current["fits"], current["stacked"]))
    stop = _Stop(handle_signals, say)
    per_step = []
    try:
        for b, batch in enumerate(batches):
            if stop.flag:
                break
            with timing("prepare"):
                su = build.setup(problems, preset, batch.fits, stack=batch.stack, devices=devices)
            histories = [[] for _ in batch.fits]
            if current and b == 0:
                with timing("checkpoint"):
                    su.state = checkpointer.restore(su.state)
                histories = [list(h) for h in current["histories"]]
            loop = BatchLoop(
                su,
                preset,
                chunk,
                save_every,
                checkpoint_every,
                checkpointer,
                timing,
                caches.setdefault(batch.group, {}),
                stop,
                pipeline,
                lambda done, rows: (
                    on_chunk
                    and on_chunk(Progress(b + 1, len(batches), done, preset.iters, su.fits, rows))
                ),
                say,
            )
            for r in loop.run(problems, histories):
                results[r.key] = r
                if checkpointer is not None and not r.interrupted:
                    with timing("checkpoint"):
                        _keep(checkpointer, r)
                on_fit and on_fit(r)
            if loop.step_s == loop.step_s:
                per_step.append(loop.step_s / (len(su.fits) if su.stacked else 1))
    finally:
        try:
            if checkpointer is not None:  # before the handlers go: a second Ctrl-C waits too
                with timing("checkpoint"):
                    checkpointer.wait()
        finally:
            stop.restore()
    ordered = [results[f] for f in fits if f in results]
    used = (
        "+".join(sorted(set(chosen)))
        if len(set(chosen)) > 1
        else (chosen[0] if chosen else planning.resolve_strategy(strategy))
    )
    n_dev = len(devices if devices is not None else jax.local_devices())
    return RunResult(
        ordered,
        used,
        groups,
        _batch_sizes(batches, len(groups)),
        n_dev if "vmap" in chosen else 1,
        notes,
        timing.parts,
        len(ordered) < len(fits) or any(r.interrupted for r in ordered),
        statistics.median(per_step) if per_step else float("nan"),
    )


def _batch_sizes(batches, n_groups: int) -> list:
    sizes = [[] for _ in range(n_groups)]
    for b in batches:
        sizes[b.group].append(len(b.fits))
    return sizes


def _keep(checkpointer, r: FitResult) -> None:
    arrays = {"output": r.output, "output_avg": r.output_avg}
    es = None
    if r.early_stop is not None:
        if r.early_stop["output"] is not None:
            arrays["output_es"] = r.early_stop["output"]
        es = {k: v for k, v in r.early_stop.items() if k != "output"}
    if r.posterior is not None:
        arrays["posterior_mean"] = r.posterior["mean"]
        arrays["posterior_std"] = r.posterior["std"]
    checkpointer.finish(
        r.index,
        r.seed,
        arrays,
        {
            "history": r.history,
            "early_stop": es,
            "posterior_samples": None if r.posterior is None else r.posterior["samples"],
            "compile_s": r.compile_s,
            "step_s": r.step_s,
            "snapshots": sorted(r.snapshots),
        },
    )


def _loaded(problems, preset, key, arrays, record) -> FitResult:
    i, s = key
    es = record["early_stop"]
    if es is not None:
        es = dict(es, output=arrays.get("output_es"))
    post = None
    if record.get("posterior_samples") is not None:
        post = {
            "samples": record["posterior_samples"],
            "mean": arrays["posterior_mean"],
            "std": arrays["posterior_std"],
        }
    final = final_metrics(problems[i], arrays["output"], arrays["output_avg"], es, post)
    return FitResult(
        i,
        s,
        problems[i],
        preset,
        arrays["output"],
        arrays["output_avg"],
        record["history"],
        final,
        es,
        {},
        False,
        record["compile_s"],
        record["step_s"],
        post,
    )
