"""Early stopping without ground truth: the windowed moving variance (WMV) detector.

After Wang, Li, Zhuang, Chen, Liang, Sun, "Early Stopping for Deep Image Prior" (ES-WMV): the
outputs of a fit first settle on the image content and then start to chase the noise; the
spread of the last ``window`` outputs is lowest around the turn. The detector keeps the last
``window`` outputs on the device, computes their variance every step, and remembers the lowest
variance, the iteration that ended that window and the output there (the newest of the
window). When ``patience`` steps pass without a new minimum it fires: the fit may stop
(``halt``) or go on (``mark``); either way the remembered output and iteration stay those of
the detection.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

MODES = ("off", "mark", "halt")


def init(window: int, out_shape) -> dict:
    """The detector's state for outputs of ``out_shape`` (1, H, W, C): a ring buffer of the last
    ``window`` outputs, one column each (H * W * C, window), the best (lowest) variance so far,
    the iteration that ended its window (1-based; 0 = none yet), the output there, steps since
    the best, whether it fired and when."""
    return {
        "buf": jnp.zeros((math.prod(out_shape), window), jnp.float32),
        "best_var": jnp.full((), jnp.inf, jnp.float32),
        "best_iter": jnp.zeros((), jnp.int32),
        "best_out": jnp.zeros(tuple(out_shape), jnp.float32),
        "since": jnp.zeros((), jnp.int32),
        "fired": jnp.zeros((), bool),
        "fired_at": jnp.zeros((), jnp.int32),
    }


def update(es: dict, out: jax.Array, it: jax.Array, patience: int, take=True):
    """Add ``out`` (the output of 1-based iteration ``it``) and return (state, variance); with
    ``take`` false (a diverged step) the state stays as it was.

    The variance is the mean over the window of the squared distance of each output from the
    window's mean, per pixel and channel; NaN until the window is full. The outputs are
    columns so that the mean over the window reduces rows: XLA's CPU reduction over a leading
    axis took 118 ms for 100 outputs of 256x256x3, over the trailing one 3 ms."""
    window = es["buf"].shape[1]
    slot = (it - 1) % window
    col = jnp.where(take, out.reshape(-1).astype(jnp.float32), es["buf"][:, slot])
    buf = es["buf"].at[:, slot].set(col)  # one column either way, not a select of the buffer
    full = it >= window
    var = jnp.mean(jnp.square(buf - buf.mean(1, keepdims=True)))
    var = jnp.where(full, var, jnp.nan)
    live = take & ~es["fired"]
    better = live & full & (var < es["best_var"])
    since = jnp.where(better, 0, es["since"] + (live & full).astype(jnp.int32))
    fire = live & (since >= patience) & (es["best_iter"] > 0)
    new = {
        "buf": buf,
        "best_var": jnp.where(better, var, es["best_var"]),
        "best_iter": jnp.where(better, it, es["best_iter"]),
        "best_out": jnp.where(better, out.astype(jnp.float32), es["best_out"]),
        "since": since,
        "fired": es["fired"] | fire,
        "fired_at": jnp.where(fire, it, es["fired_at"]),
    }
    return new, var
