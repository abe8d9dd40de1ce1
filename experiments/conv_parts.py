"""One convolution layer split into its three products, per variant, against PyTorch's.

    python experiments/conv_parts.py [--size 128] [--channels 132] [--out-channels 128]
        [--kernel 3] [--variants xla crop strips-2048 dot dot-4d] [--rounds 7]
        [--precision f32|bf16] [--taps] [--libraries]

The layer is by default the denoising net's largest: a 3x3, stride-1, unpadded convolution (what
follows each reflection pad) of a (1, size + 2, size + 2, channels) map; ``--kernel 1`` makes it
a 1x1 convolution of a (1, size, size, channels) map (the ``dot`` variant's, as every 1x1 layer
runs). ``dot-4d`` is the ``dot`` variant as it was written before 2026-12-03: one product of the
4-D patches with the kernel, whose weight gradient contracts N, H and W at once.
For every variant of ``dipjax.ops.conv.conv_variant`` its forward pass, input gradient and
weight gradient are jitted apart (each gradient without the other) and timed (with
``--libraries``, under each convolution library, ``dipjax.ops.conv.compiler_options``); with PyTorch
installed, ``conv2d`` on the same arrays (NCHW; bfloat16 tensors for ``--precision bf16``),
forward alone and forward plus backward. With ``--taps``, also the layer as nine shifted matrix
products (one per kernel tap, summed: forward pass and weight gradient) and the im2col patches
alone (``dipjax.ops.conv.patches``). All calls are timed in interleaved rounds (median ms), so
that the machine's slow moments fall on all of them.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from dipjax.ops import conv  # noqa: E402


def dot_4d(x, kernel, stride=1, precision="f32"):
    """The ``dot`` variant as it was before 2026-12-03: one product of the 4-D patches
    (N, Ho, Wo, k*k*C) with the (k*k*C, O) kernel, float32 out."""
    if precision == "bf16":
        x, kernel = x.astype(jax.numpy.bfloat16), kernel.astype(jax.numpy.bfloat16)
    cols = conv.patches(x, kernel.shape[0], stride)
    w = kernel.reshape(-1, kernel.shape[-1])
    return jax.numpy.dot(cols, w, preferred_element_type=np.float32)


def jax_calls(x, w, g, variants, precision="f32", library="ynnpack") -> dict:
    """{name: call} for each variant's forward pass, input gradient and weight gradient,
    compiled with ``library``'s options (``conv.compiler_options``; names prefixed with it
    unless it is XLA's default)."""
    calls, prefix = {}, "" if library == conv.LIBRARIES[0] else f"{library} "
    options = conv.compiler_options(library)
    for v in variants:
        f = lambda a, b, v=v: (
            dot_4d(a, b, 1, precision)
            if v == "dot-4d"
            else conv.conv_variant(a, b, 1, 0, v, precision)
        )
        parts = {
            "forward": (jax.jit(f), (x, w)),
            "input gradient": (
                jax.jit(lambda a, b, g, f=f: jax.vjp(lambda a_: f(a_, b), a)[1](g)[0]),
                (x, w, g),
            ),
            "weight gradient": (
                jax.jit(lambda a, b, g, f=f: jax.vjp(lambda b_: f(a, b_), b)[1](g)[0]),
                (x, w, g),
            ),
        }
        for part, (fn, args) in parts.items():
            fn = fn.lower(*args).compile(options)
            calls[f"{prefix}{v} {part}"] = lambda fn=fn, args=args: jax.block_until_ready(fn(*args))
    return calls


def taps_calls(x, w, g, precision="f32") -> dict:
    """{name: call}: the forward pass and the weight gradient as one matrix product per kernel tap
    (a shifted slice of x against one (in, out) slice of w), and the im2col patches alone."""
    k, c, o = w.shape[0], w.shape[2], w.shape[3]
    ho, wo = g.shape[1:3]
    f32 = np.float32
    if precision == "bf16":
        x, w, g = (jax.numpy.asarray(a, jax.numpy.bfloat16) for a in (x, w, g))
    shifted = lambda a, i, j: a[:, i : i + ho, j : j + wo].reshape(-1, c)

    def forward(a, b):
        dot = lambda i, j: jax.numpy.dot(shifted(a, i, j), b[i, j], preferred_element_type=f32)
        return sum(dot(i, j) for i in range(k) for j in range(k)).reshape(-1, ho, wo, o)

    def weight_gradient(a, dy):
        dy = dy.reshape(-1, o)
        dims = (((0,), (0,)), ((), ()))
        taps = [
            jax.lax.dot_general(shifted(a, i, j), dy, dims, preferred_element_type=f32)
            for i in range(k)
            for j in range(k)
        ]
        return jax.numpy.stack(taps).reshape(k, k, c, o)

    x32, w32, g32 = (jax.numpy.asarray(a, f32) for a in (x, w, g))  # the same (rounded) values
    want = (conv._xla(x32, w32, 1), jax.vjp(lambda b: conv._xla(x32, b, 1), w32)[1](g32)[0])
    for fn, args, ref in ((forward, (x, w), want[0]), (weight_gradient, (x, g), want[1])):
        err = float(jax.numpy.abs(fn(*args) - ref).max() / jax.numpy.abs(ref).max())
        assert err < 1e-4, f"{fn.__name__} is not the convolution's: relative error {err:.1e}"
    calls = {
        "taps forward": (jax.jit(forward), (x, w)),
        "taps weight gradient": (jax.jit(weight_gradient), (x, g)),
        "patches alone": (jax.jit(lambda a: conv.patches(a, k, 1)), (x,)),
    }
    return {n: lambda fn=fn, a=a: jax.block_until_ready(fn(*a)) for n, (fn, a) in calls.items()}


def torch_calls(x, w, g, precision="f32") -> dict:
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(os.cpu_count())
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    tensor = lambda a, t, grad=False: torch.tensor(
        a.transpose(t).copy(), dtype=dtype
    ).requires_grad_(grad)
    tx = tensor(x, (0, 3, 1, 2), True)
    tw = tensor(w, (3, 2, 0, 1), True)
    tg = tensor(g, (0, 3, 1, 2))

    def forward():
        with torch.no_grad():
            torch.nn.functional.conv2d(tx, tw)

    def both():
        tx.grad = tw.grad = None
        torch.nn.functional.conv2d(tx, tw).backward(tg)

    return {f"PyTorch {torch.__version__} forward": forward, "PyTorch forward + backward": both}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--channels", type=int, default=132)
    ap.add_argument("--out-channels", type=int, default=128)
    ap.add_argument("--kernel", type=int, default=3)
    ap.add_argument("--variants", nargs="+", default=["xla", "crop", "strips-2048", "dot"])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--precision", choices=conv.PRECISIONS, default="f32")
    ap.add_argument("--taps", action="store_true", help="also nine shifted products, and patches")
    ap.add_argument(
        "--libraries",
        action="store_true",
        help="every variant under each convolution library this jaxlib offers (YNNPACK, "
        "XLA's default, and Eigen), not YNNPACK alone",
    )
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    n, c, o, ks = args.size, args.channels, args.out_channels, args.kernel
    x = rng.normal(size=(1, n + ks - 1, n + ks - 1, c)).astype(np.float32)
    w = (rng.normal(size=(ks, ks, c, o)) / np.sqrt(ks * ks * c)).astype(np.float32)
    g = rng.normal(size=(1, n, n, o)).astype(np.float32)
    libraries = conv.libraries() if args.libraries else conv.LIBRARIES[:1]
    calls = {
        **{
            k: f
            for lib in libraries
            for k, f in jax_calls(x, w, g, args.variants, args.precision, lib).items()
        },
        **(taps_calls(x, w, g, args.precision) if args.taps else {}),
        **torch_calls(x, w, g, args.precision),
    }
    for call in calls.values():
        call()
    times = {k: [] for k in calls}
    for _ in range(args.rounds):
        for k, call in calls.items():
            t = time.perf_counter()
            call()
            times[k].append(time.perf_counter() - t)
    gflop = 2 * n * n * ks * ks * c * o / 1e9
    print(
        f"{ks}x{ks} convolution, (1, {n + ks - 1}, {n + ks - 1}, {c}) -> (1, {n}, {n}, {o}), "
        "unpadded, "
        f"{args.precision}; jax {jax.__version__}, {os.cpu_count()} CPUs; "
        f"median of {args.rounds} interleaved rounds\n\n| product | ms | GFLOP/s |\n|---|---|---|"
    )
    for k, ts in times.items():
        ms = statistics.median(ts) * 1e3
        flops = 3 * gflop if k.endswith("backward") else gflop
        rate = "-" if k == "patches alone" else f"{flops / ms * 1e3:.0f}"
        print(f"| {k} | {ms:.1f} | {rate} |")


if __name__ == "__main__":
    main()
