"""The command line's progress bar and closing lines."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def write_line(line: str) -> None:
    """A line on stderr, above the progress bar when one is shown."""
    tqdm.write(line, file=sys.stderr)


class ProgressBar:
    """One bar over the iterations of the batch of fits in flight, reset when the next batch
    starts (labelled 'batch b/B' when there are several): iteration, loss, PSNR, ETA."""

    def __init__(self, total: int, disable: bool = False):
        self.bar = tqdm(total=total, unit="it", disable=disable, dynamic_ncols=True, smoothing=0.1)
        self.bar.set_postfix_str("compiling the step", refresh=True)
        self.batch = None

    def update(self, progress) -> None:
        if progress.batch != self.batch:
            if self.batch is not None:
                self.bar.reset()
            self.batch = progress.batch
            # iterations done before this run (a resume): counted, but not in the rate
            first = progress.done - len(next(iter(progress.rows.values())))
            self.bar.initial = self.bar.n = self.bar.last_print_n = first
            if progress.batches > 1:
                self.bar.set_description(
                    f"batch {progress.batch}/{progress.batches}", refresh=False
                )
        self.bar.update(progress.done - self.bar.n)
        self.bar.set_postfix(postfix(progress.last), refresh=False)

    def close(self) -> None:
        self.bar.close()


def postfix(m: dict) -> dict:
    out = {"loss": f"{m['loss']:.4g}", "psnr": f"{m['psnr_fit']:.2f}"}
    if "psnr_gt" in m:
        out["psnr_gt"] = f"{m['psnr_gt']:.2f}"
    return out


def final_lines(out, run, timing: dict) -> list:
    """What the command line says when a run ends: the result, early stopping, and where the
    wall time went (the total and the largest part besides the device's steps)."""
    from dipjax.ensemble import ensemble_stats

    lines = []
    images = sorted({f.index for f in run.fits})
    if len(images) == 1 and len(run.fits) == 1:
        f = run.fits[0]
        lines.append(f"wrote {out}/ {_result(f.final)}".rstrip())
        if f.early_stop is not None:
            lines.append(_early_stop(f))
    elif len(images) == 1:
        fin = ensemble_stats(run.fits)["final"]
        line = f"wrote {out}/ {len(run.fits)} seeds ({run.strategy})"
        if "psnr_mean" in fin:
            line += (
                f": mean of seeds {fin['psnr_mean']:.2f} dB, single seeds "
                f"{fin['psnr_single_mean']:.2f} dB on average"
            )
        lines.append(line)
    else:
        seeds = len(run.fits) // max(1, len(images))
        lines.append(
            f"wrote {out}/ ({len(images)} images x {_count(seeds, 'seed')}, {run.strategy}, "
            f"{_count(len(run.groups), 'shape group')}); metrics in {out}/metrics.csv"
        )
    parts = {
        k: v for k, v in timing.items() if k not in ("steps", "total") and not k.endswith("_at")
    }
    big = max(parts, key=parts.get) if parts else "other"
    lines.append(
        f"wall {timing['total']:.1f} s: steps {timing.get('steps', 0.0):.1f} s, "
        f"largest other part {big} {parts.get(big, 0.0):.1f} s "
        f"(step {run.step_s * 1e3:.1f} ms per fit-iteration; summary.json 'timing')"
    )
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _result(f: dict) -> str:
    if "psnr_gt" not in f:
        return ""
    base = f", baseline {f['psnr_baseline']:.2f} dB" if "psnr_baseline" in f else ""
    return f"PSNR {f['psnr_gt']:.2f} dB (average {f['psnr_gt_avg']:.2f} dB{base})"


def _early_stop(fit) -> str:
    es = fit.early_stop
    if es["iter"] == 0:
        return (
            f"early stopping: nothing detected (the detector needs {fit.preset.es_window} "
            f"iterations for its first window; the run did {fit.iters_done})"
        )
    state = (
        f"fired at iteration {es['fired_at']}"
        if es["fired"]
        else f"not fired: fewer than {fit.preset.es_patience} iterations followed it"
    )
    score = f"; PSNR there {fit.final['psnr_gt_es']:.2f} dB" if "psnr_gt_es" in fit.final else ""
    return (
        f"early stopping: detected iteration {es['iter']}, {state}{score}; "
        f"its output is output_es.png"
    )
