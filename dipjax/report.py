"""What a fit leaves on disk: images, metrics, plots, summary; and the progress bar."""
from __future__ import annotations

import dataclasses
import io as _io
import json
import pathlib
import platform
from importlib import metadata

import numpy as np
from tqdm.auto import tqdm

from dipjax.io import atomic_write_bytes, save_png

PACKAGES = ("dipjax", "jax", "jaxlib", "flax", "optax", "numpy")


def progress(total: int, disable: bool = False):
    return tqdm(total=total, unit="it", disable=disable, dynamic_ncols=True, smoothing=0.1)


def postfix(m: dict) -> dict:
    out = {"loss": f"{m['loss']:.4g}", "psnr": f"{m['psnr_fit']:.2f}"}
    if "psnr_gt" in m:
        out["psnr_gt"] = f"{m['psnr_gt']:.2f}"
    return out


def final_line(res) -> str:
    f = res.final
    if "psnr_gt" not in f:
        return f"(step {res.step_s * 1e3:.0f} ms)"
    base = f", baseline {f['psnr_baseline']:.2f} dB" if "psnr_baseline" in f else ""
    return (f"PSNR {f['psnr_gt']:.2f} dB (average {f['psnr_gt_avg']:.2f} dB{base}); "
            f"step {res.step_s * 1e3:.0f} ms, compile {res.compile_s:.1f} s")


def early_stop_line(res) -> str:
    es = res.early_stop
    state = (f"fired at iteration {es['fired_at']}" if es["fired"]
             else "not fired (no variance minimum held for the patience)")
    score = f", PSNR there {res.final['psnr_gt_es']:.2f} dB" if "psnr_gt_es" in res.final else ""
    return (f"early stopping: detected iteration {es['iter']} ({state}){score}; "
            f"its output is output_es.png")


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1, default=_jsonable) + "\n").encode()


def _jsonable(o):
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)


def _figure_bytes(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def comparison_figure(res) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = res.problem
    first = "input (bicubic)" if p.task == "superres" else "input"
    panels = [(first, p.degraded), ("dipjax (average)", res.output_avg)]
    es = getattr(res, "early_stop", None)
    if es is not None and es["iter"] > 0:
        panels.append((f"early stop (iter {es['iter']})", es["output"]))
    if p.gt is not None:
        panels.append(("ground truth", p.gt))
    panels = [(t, im) for t, im in panels if im is not None and np.ndim(im) == 3]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.3))
    for ax, (title, img) in zip(np.atleast_1d(axes), panels):
        img = np.clip(img, 0, 1)
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        if p.gt is not None and title != "ground truth" and img.shape == p.gt.shape:
            from dipjax.metrics import psnr_np

            title += f"\n{psnr_np(img, p.gt):.2f} dB"
        ax.set_title(title)
        ax.axis("off")
    return _figure_bytes(fig)


def curves_figure(history: list) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    it = [h["iter"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.semilogy(it, [h["loss"] for h in history])
    a.set_xlabel("iteration")
    a.set_ylabel("loss")
    for key, label in (("psnr_fit", "fit (vs. measurement)"), ("psnr_gt", "vs. ground truth"),
                       ("psnr_gt_avg", "average vs. ground truth")):
        if history and key in history[0]:
            b.plot(it, [h[key] for h in history], label=label)
    b.set_xlabel("iteration")
    b.set_ylabel("PSNR (dB)")
    b.legend()
    if history and "wmv" in history[0]:
        c = b.twinx()
        c.semilogy(it, [h["wmv"] for h in history], color="grey", lw=0.8)
        c.set_ylabel("early-stopping window variance", color="grey")
    fig.tight_layout()
    return _figure_bytes(fig)


def hyperparameters(preset) -> dict:
    """Every field of a preset, the generator spec left as an object for ``_jsonable``."""
    return {f.name: getattr(preset, f.name) for f in dataclasses.fields(preset)}


def summary(res, args=None) -> dict:
    import jax

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    dev = jax.local_devices()[0]
    return {
        "task": res.preset.task, "preset": res.preset.name,
        "hyperparameters": hyperparameters(res.preset), "seed": res.seed,
        "iters_done": res.history[-1]["iter"] if res.history else 0,
        "interrupted": res.interrupted,
        "inputs": {k: getattr(args, k, None) for k in ("image", "mask", "gt", "flash", "degrade")},
        "notes": res.problem.notes, "versions": versions, "python": platform.python_version(),
        "device": {"platform": dev.platform, "kind": dev.device_kind,
                   "count": jax.device_count()},
        "compile_s": res.compile_s, "step_s": res.step_s, "final": res.final,
        "last": res.history[-1] if res.history else None,
        "early_stop": None if res.early_stop is None else
        {k: v for k, v in res.early_stop.items() if k != "output"},
    }


def write_outputs(out: pathlib.Path, res, args=None) -> None:
    """Every file is written atomically (temporary file, then rename)."""
    out = pathlib.Path(out)
    save_png(out / "output.png", res.output)
    save_png(out / "output_avg.png", res.output_avg)
    if res.early_stop is not None and res.early_stop["iter"] > 0:
        save_png(out / "output_es.png", res.early_stop["output"])
    if res.problem.degraded is not None:
        save_png(out / "degraded.png", res.problem.degraded)
    if res.snapshots:
        (out / "snapshots").mkdir(exist_ok=True)
        for it, img in res.snapshots.items():
            save_png(out / "snapshots" / f"iter_{it:06d}.png", img)
    lines = "".join(json.dumps(h) + "\n" for h in res.history)
    atomic_write_bytes(out / "metrics.jsonl", lines.encode())
    atomic_write_bytes(out / "comparison.png", comparison_figure(res))
    atomic_write_bytes(out / "curves.png", curves_figure(res.history))
    atomic_write_bytes(out / "summary.json", _json_bytes(summary(res, args)))


def write_ensemble_outputs(out: pathlib.Path, res, problem, preset, args=None) -> None:
    """seed_S/output.png and output_avg.png per seed; mean.png, std.png (scaled to its maximum),
    std.npy (raw, (H, W, C)), degraded.png, metrics.jsonl (lists over seeds), summary.json."""
    from dipjax.ensemble import uncertainty_png

    out = pathlib.Path(out)
    for s, o, a in zip(res.seeds, res.outputs, res.outputs_avg):
        (out / f"seed_{s}").mkdir(exist_ok=True)
        save_png(out / f"seed_{s}" / "output.png", o)
        save_png(out / f"seed_{s}" / "output_avg.png", a)
    save_png(out / "mean.png", res.mean)
    save_png(out / "std.png", uncertainty_png(res.std))
    buf = _io.BytesIO()
    np.save(buf, res.std.astype(np.float32))
    atomic_write_bytes(out / "std.npy", buf.getvalue())
    if problem.degraded is not None:
        save_png(out / "degraded.png", problem.degraded)
    lines = "".join(json.dumps(h) + "\n" for h in res.history)
    atomic_write_bytes(out / "metrics.jsonl", lines.encode())
    summ = {"task": preset.task, "preset": preset.name, "seeds": res.seeds,
            "strategy": res.strategy,
            "hyperparameters": hyperparameters(preset),
            "compile_s": res.compile_s, "step_s_per_fit": res.step_s, "final": res.final,
            "inputs": {k: getattr(args, k, None) for k in ("image", "mask", "gt", "flash",
                                                           "degrade")}}
    atomic_write_bytes(out / "summary.json", _json_bytes(summ))
