"""The step with BatchNorm's gradient written out (``dipjax.nets.layers._normalise``, the
default) against JAX's autodiff of the same statistics.

    python experiments/normalise_speed.py [--preset denoise] [--side 128] [--rounds 8]

The preset's one-step chunk on the packaged image's top-centre side x side crop is compiled
twice in this process, once with each normalisation, and the two are timed in interleaved
rounds (``step_variants.interleaved``: a warm-up call, then two calls timed), so that the
machine's slow moments fall on both; freed memory is kept as the command line keeps it.
"""

from __future__ import annotations

import pathlib
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from dipjax import host_memory  # noqa: E402

host_memory.keep_freed_memory()

import jax  # noqa: E402
from step_variants import interleaved, one_fit_setup, preset_step_parser  # noqa: E402

from dipjax.nets import layers  # noqa: E402
from dipjax.step import compiled_chunk  # noqa: E402


def by_autodiff(x, axes, eps):
    """The same normalisation, its gradient left to JAX."""
    return layers._normalise_fwd(x, axes, eps)[0]


def main(argv=None):
    args = preset_step_parser(__doc__, rounds=8).parse_args(argv)
    p, _, su = one_fit_setup(args.preset, args.side)
    written = layers._normalise
    runs = {}
    try:
        for name, fn in (("autodiff", by_autodiff), ("written out", written)):
            layers._normalise = fn
            runs[name], _ = compiled_chunk(su.step, 1, su.state, su.batch)
    finally:
        layers._normalise = written
    assert runs["autodiff"].as_text() != runs["written out"].as_text()
    print(
        f"{p.name}, {args.side} px, jax {jax.__version__} on {jax.default_backend()}; "
        f"ms per step, median of {args.rounds} interleaved rounds (each round's times)"
    )
    for name, ts in interleaved(runs, su.state, su.batch, args.rounds).items():
        each = " ".join(f"{t * 1e3:.0f}" for t in ts)
        print(f"| {name} | {statistics.median(ts) * 1e3:.1f} | {each} |")


if __name__ == "__main__":
    main()
