"""The pictures a run writes: the comparison panel and the loss/PSNR curves (PNG bytes)."""

from __future__ import annotations

import io as _io
from typing import Optional

import numpy as np

from dipjax.metrics import psnr_np


def _figure_bytes(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def comparison_figure(
    p, result: np.ndarray, label: str = "dipjax (average)", es: Optional[dict] = None
) -> bytes:
    """Input, ``result`` (H, W, C) in [0, 1], the early-stopping output and the ground truth
    side by side, with PSNRs where the ground truth is known; PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = "input (bicubic)" if p.task == "superres" else "input"
    panels = [(first, p.degraded), (label, result)]
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
            title += f"\n{psnr_np(img, p.gt):.2f} dB"
        ax.set_title(title)
        ax.axis("off")
    return _figure_bytes(fig)


def curves_figure(history: list) -> bytes:
    """Loss and PSNR per iteration (and the early-stopping variance), PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    it = [h["iter"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.semilogy(it, [h["loss"] for h in history])
    a.set_xlabel("iteration")
    a.set_ylabel("loss")
    for key, label in (
        ("psnr_fit", "fit (vs. measurement)"),
        ("psnr_gt", "vs. ground truth"),
        ("psnr_gt_avg", "average vs. ground truth"),
    ):
        if history and key in history[0]:
            b.plot(it, [h[key] for h in history], label=label)
    b.set_xlabel("iteration")
    b.set_ylabel("PSNR (dB)")
    if history:  # a run stopped before its first step has no curve to label
        b.legend()
    if history and "wmv" in history[0]:
        c = b.twinx()
        c.semilogy(it, [h["wmv"] for h in history], color="grey", lw=0.8)
        c.set_ylabel("early-stopping window variance", color="grey")
    fig.tight_layout()
    return _figure_bytes(fig)
