"""The step with the gradients dipjax writes out against JAX's own, one at a time and all.

    python experiments/written_gradients.py [--preset denoise] [--side 128] [--rounds 8]
        [--only all bn affine dot bn+dot]

Written out (the default) | replaced here by
- ``bn``: BatchNorm with its scale, bias and activation, ``layers.norm_act`` (two full-size
  arrays written and two reduced in the backward pass) | JAX's autodiff of the two-pass
  statistics, the affine map and the activation;
- ``affine``: the same | the normalisation alone written out (x-hat's gradient, as it was before
  2026-12-03), its scale, bias and activation left to autodiff;
- ``dot``: the matrix-product convolutions as 2-D products, ``conv.conv_dot`` | the 4-D product
  of the patches (its weight gradient contracts N, H and W at once).
The preset's one-step chunk on the packaged image's top-centre side x side crop is compiled once
per variant in this process, then all are timed in interleaved rounds
(``step_variants.interleaved``: a warm-up call, then two calls timed), so that the machine's slow
moments fall on all (``--only``: which pieces, alone or joined by "+", "all" for bn+dot);
freed memory is kept as the command line keeps it. Also printed: how many arrays of at least
100 full-resolution channels each compiled step writes.
"""

from __future__ import annotations

import functools
import pathlib
import re
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from dipjax import host_memory  # noqa: E402

host_memory.keep_freed_memory()

import jax  # noqa: E402
from conv_parts import dot_4d  # noqa: E402
from step_variants import interleaved, one_fit_setup, preset_step_parser  # noqa: E402

from dipjax.nets import layers  # noqa: E402
from dipjax.ops import conv, conv_choice  # noqa: E402
from dipjax.step import make_runner  # noqa: E402


def _act(slope, z):
    return z if slope == 1.0 else jax.numpy.where(z > 0, z, slope * z)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _normalise_only(x, axes, eps):
    """x-hat with its gradient written out, as ``layers`` had it before 2026-12-03."""
    mean, rstd = layers._statistics(x, axes, eps)
    return (x - mean) * rstd


def _normalise_only_fwd(x, axes, eps):
    mean, rstd = layers._statistics(x, axes, eps)
    return (x - mean) * rstd, (x, mean, rstd)


def _normalise_only_bwd(axes, eps, residuals, g):
    x, mean, rstd = residuals
    xhat = (x - mean) * rstd
    g_mean = g.mean(axis=axes, keepdims=True)
    gx_mean = (g * xhat).mean(axis=axes, keepdims=True)
    return (rstd * (g - g_mean - xhat * gx_mean),)


_normalise_only.defvjp(_normalise_only_fwd, _normalise_only_bwd)

# Module attributes the nets look up while tracing.
AUTODIFF = {
    "bn": (
        layers,
        "norm_act",
        lambda x, scale, bias, axes, eps, slope: layers._norm_act_fwd(
            x, scale, bias, axes, eps, slope
        )[0],
    ),
    "affine": (
        layers,
        "norm_act",
        lambda x, scale, bias, axes, eps, slope: _act(
            slope, _normalise_only(x, axes, eps) * scale + bias
        ),
    ),
    "dot": (conv, "conv_dot", dot_4d),
}


def compiled_with_autodiff(names, su):
    """(the one-step chunk compiled, its lowered program as text), traced with the pieces
    ``names`` left to JAX's autodiff."""
    saved = [(mod, attr, getattr(mod, attr)) for mod, attr, _ in (AUTODIFF[n] for n in names)]
    try:
        for n in names:
            mod, attr, fn = AUTODIFF[n]
            setattr(mod, attr, fn)
        # lowered as compiled_chunk lowers one fit's chunk, once: its text, then compiled
        lowered, options = conv_choice.traced(
            lambda: make_runner(su.step, 1, None).lower(su.state, su.batch)
        )
        return lowered.compile(options), lowered.as_text()
    finally:
        for mod, attr, fn in saved:
            setattr(mod, attr, fn)


def big_arrays(hlo: str, side: int) -> int:
    """The most arrays of >= side * side * 100 elements written by one computation (not
    counting fused computations' insides): the step's full-resolution passes."""
    counts = []
    for comp in re.split(r"\n(?=(?:ENTRY )?%[\w.\-]+ [^\n]*\{\n)", hlo):
        if "fused_computation" in comp.split("\n", 1)[0]:
            continue
        n = 0
        for shape, op in re.findall(
            r"\n\s+(?:ROOT )?%[\w.\-]+ = \w+\[([\d,]*)\]\S* ([\w-]+)\(", comp
        ):
            size = 1
            for d in filter(None, shape.split(",")):
                size *= int(d)
            n += size >= side * side * 100 and op not in ("bitcast", "parameter", "tuple")
        counts.append(n)
    return max(counts)


def main(argv=None):
    ap = preset_step_parser(__doc__, rounds=8)
    ap.add_argument("--only", nargs="+", default=["all", *AUTODIFF])
    args = ap.parse_args(argv)
    for name in args.only:
        if name != "all" and not set(name.split("+")) <= set(AUTODIFF):
            ap.error(f"--only {name}: not 'all' or pieces of {', '.join(AUTODIFF)} joined by '+'")
    # compiled here, not read from a compile cache: a cached executable has no HLO text to count
    jax.config.update("jax_enable_compilation_cache", False)
    p, _, su = one_fit_setup(args.preset, args.side)
    side = su.batch["z"].shape[1]
    runs = {}
    runs["written out"], written = compiled_with_autodiff([], su)
    for name in args.only:
        label = "all by autodiff" if name == "all" else f"{name} by autodiff"
        pieces = ["bn", "dot"] if name == "all" else name.split("+")
        runs[label], program = compiled_with_autodiff(pieces, su)
        if program == written:  # the replacement was not reached by the net's trace
            sys.exit(f"--only {name}: the step traces as with the gradients written out")
    print(
        f"{p.name}, {side} px, jax {jax.__version__} on {jax.default_backend()}; ms per step, "
        f"median of {args.rounds} interleaved rounds (fastest; each round's times)\n"
    )
    print("| gradients | step ms | fastest | full-resolution arrays written | rounds |")
    print("|---|---|---|---|---|")
    for name, ts in interleaved(runs, su.state, su.batch, args.rounds).items():
        each = " ".join(f"{t * 1e3:.0f}" for t in ts)
        n = big_arrays(runs[name].as_text(), side)
        print(
            f"| {name} | {statistics.median(ts) * 1e3:.1f} | {min(ts) * 1e3:.1f} | {n} | {each} |"
        )


if __name__ == "__main__":
    main()
