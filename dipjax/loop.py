"""The chunk loop of one batch of fits (a ``build.Setup``): the engine's inner loop.

It keeps one chunk in flight: chunk c+1 is dispatched before chunk c's metrics are read back
(one transfer per chunk), so the device does not wait for the host. Where the next dispatch
depends on the last chunk (``early_stop='halt'``, a stop request) or the state must be saved (a
checkpoint), it waits first; results do not depend on the pipelining.
"""

from __future__ import annotations

import statistics
import time

import jax
import numpy as np

from dipjax.results import FitResult, clip01, early_stop_record, final_metrics, posterior_record
from dipjax.step import chunk_sizes, compiled_chunk


class BatchLoop:
    """The chunk loop of one batch of fits (a Setup)."""

    def __init__(
        self,
        su,
        preset,
        chunk,
        save_every,
        checkpoint_every,
        checkpointer,
        timing,
        cache,
        stop,
        pipeline,
        notify,
        say=None,
    ):
        self.su, self.preset, self.chunk, self.pipeline = su, preset, chunk, pipeline
        self.save_every, self.checkpoint_every = save_every, checkpoint_every
        self.ckpt, self.timing, self.cache, self.stop = checkpointer, timing, cache, stop
        self.notify, self.say = notify, say
        self.seconds, self.compile_s, self.step_s = [], 0.0, float("nan")

    def _process(self, pending, histories) -> None:
        m, done, n, t_dispatch = pending
        with self.timing("steps"):
            m = jax.device_get(m)
        t_ready = time.perf_counter()
        self.timing.mark("first_chunk_at")
        self.seconds.append(((t_ready - max(t_dispatch, self._last_ready)) / n, n))
        self._last_ready = t_ready
        with self.timing("host"):
            k = len(self.su.fits)
            cols = {key: np.asarray(v).reshape(n, -1)[:, :k] for key, v in m.items()}
            rows = {}
            for j, fit in enumerate(self.su.fits):
                rows[fit] = [
                    {"iter": done - n + i + 1, **{key: _scalar(v[i, j]) for key, v in cols.items()}}
                    for i in range(n)
                ]
                histories[j].extend(rows[fit])
            if self.notify(done, rows):
                self.stop.flag = True
            if self.preset.early_stop == "halt" and "es_fired" in cols:
                self.halted = bool(np.all(cols["es_fired"][-1]))

    def run(self, problems, histories):
        su, preset, iters = self.su, self.preset, self.preset.iters
        sizes = chunk_sizes(iters, self.chunk, (self.save_every, self.checkpoint_every))
        state, skip, done = su.state, len(histories[0]), 0
        snaps, pending, self.halted, self._last_ready = [], None, False, 0.0
        sync = preset.early_stop == "halt" or not self.pipeline
        runners = {}  # by chunk length: the state's signature does not change within a batch
        for n in sizes:
            if done + n <= skip:
                done += n
                continue
            if n not in runners:
                with self.timing("compile"):
                    runners[n], seconds = compiled_chunk(
                        su.step,
                        n,
                        state,
                        su.batch,
                        batch_axes=su.axes,
                        mesh=su.mesh,
                        cache=self.cache,
                        report=self.say,
                        stop=lambda: self.stop.flag,
                    )
                self.compile_s += seconds
                if seconds:  # a chunk that finished while this compiled must not be charged for it
                    self._last_ready = time.perf_counter()
                if self.stop.flag:  # stopped while compiling: no step of it
                    break
            runner = runners[n]
            with self.timing("host"):
                t_dispatch = time.perf_counter()
                state, m = runner(state, su.batch)
                done += n
            if self.save_every and done % self.save_every == 0 and done < iters:
                with self.timing("snapshot"):
                    snaps.append((done, su.render(state.params)))  # dispatched, read later
            if pending is not None:
                self._process(pending, histories)
            pending = (m, done, n, t_dispatch)
            save = (
                self.ckpt is not None
                and self.checkpoint_every
                and done % self.checkpoint_every == 0
                and done < iters
            )
            if sync or save or self.stop.flag:
                self._process(pending, histories)
                pending = None
            if save:
                with self.timing("checkpoint"):
                    self.ckpt.save(su.fits, su.stacked, state, histories)
            if self.stop.flag or self.halted:
                break
        if pending is not None:
            self._process(pending, histories)
        full = [s for s, n in self.seconds if n == self.chunk] or [s for s, _ in self.seconds]
        self.step_s = statistics.median(full) if full else float("nan")
        interrupted = done < iters and not self.halted
        if interrupted and self.ckpt is not None:
            with self.timing("checkpoint"):
                self.ckpt.save(su.fits, su.stacked, state, histories)
        return self._results(problems, state, histories, snaps, interrupted)

    def _results(self, problems, state, histories, snaps, interrupted) -> list:
        su, got = self.su, []
        with self.timing("host"):
            outs = clip01(su.per_fit(su.render(state.params))[:, 0])
            avgs = clip01(su.per_fit(state.out_avg)[:, 0])
            for j, h in enumerate(histories):
                if not h:  # no step yet: the average of no output is the first one
                    avgs[j] = outs[j]
            found = {k: v for k, v in state.es.items() if k != "buf"}  # not the whole window
            es_all, post_all = jax.device_get((found, state.post))
            snap_host = [(it, clip01(su.per_fit(img)[:, 0])) for it, img in snaps]
            for j, (i, s) in enumerate(su.fits):
                es = early_stop_record({k: su.per_fit(v)[j] for k, v in es_all.items()})
                post = posterior_record({k: su.per_fit(v)[j] for k, v in post_all.items()})
                got.append(
                    FitResult(
                        i,
                        s,
                        problems[i],
                        self.preset,
                        outs[j],
                        avgs[j],
                        histories[j],
                        final_metrics(problems[i], outs[j], avgs[j], es, post),
                        es,
                        {it: img[j] for it, img in snap_host},
                        interrupted,
                        self.compile_s,
                        self.step_s,
                        post,
                    )
                )
        return got


def _scalar(v):
    return bool(v) if isinstance(v, (bool, np.bool_)) else float(v)
