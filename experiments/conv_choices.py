"""What this machine's measured convolution variants are, and what they change in the step.

    python experiments/conv_choices.py [--preset denoise] [--side 128] [--rounds 10]

1. Every tunable convolution layer of the preset's step at this size (``dipjax.ops.conv_choice``)
   measured here under each convolution library (YNNPACK, Eigen): first each fixed rule's
   variant alone (what the command line does by default, to choose the library), then every
   variant (``--measure-convs``): forward pass and both gradients, jitted alone, milliseconds
   (the fastest of interleaved rounds), the fixed rule's variant, the one chosen, the library.
2. The one-step chunk compiled three times, with the fixed rules and XLA's default library,
   with the fixed rules and the library measured, and with every choice measured, then timed
   in interleaved rounds (each round: one warm-up step, then two steps timed), so that the
   machine's slow moments fall on all: median, fastest and slowest ms per step.
The measurements go to a temporary file: the command line's own choices are not touched.
"""

from __future__ import annotations

import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from dipjax.ops import conv, conv_choice  # noqa: E402
from dipjax.step import compiled_chunk  # noqa: E402

sys.path.insert(0, str(ROOT / "experiments"))
from step_variants import interleaved, one_fit_setup, preset_step_parser  # noqa: E402


def main(argv=None):
    args = preset_step_parser(__doc__, rounds=10).parse_args(argv)
    p, prob, su = one_fit_setup(args.preset, args.side, args.tiny)
    print(f"{p.name}, image {prob.out_hw}, {conv_choice.machine()}", flush=True)

    runs = {}
    conv_choice.use_file(None)
    runs["fixed rules, XLA's default library"], _ = compiled_chunk(su.step, 1, su.state, su.batch)
    with conv.recording() as seen:
        jax.eval_shape(su.step, su.state, su.batch)
    for every in (False, True):
        with tempfile.TemporaryDirectory() as d:
            conv_choice.use_file(pathlib.Path(d) / conv_choice.FILE_NAME, every_variant=every)
            t = time.perf_counter()
            conv_choice.measure_missing(seen)
            library = conv_choice.library_for(seen)
            what = "every variant" if every else "the rules' variants"
            print(f"\n{what} measured in {time.perf_counter() - t:.1f} s; library: {library}\n")
            stored = conv_choice.entries()
            print("| layer | library | fixed rule | chosen | ms per variant |")
            print("|---|---|---|---|---|")
            for la in dict.fromkeys(x for x in seen if x.tunable()):
                for lib in conv.libraries():
                    e = stored[conv_choice.entry_key(la, lib)]
                    cells = ", ".join(f"{v} {t:.1f}" for v, t in e["ms"].items())
                    print(f"| {la.key} | {lib} | {la.rule()} | {e['choice']} | {cells} |")
            name = "measured" if every else "fixed rules"
            runs[f"{name}, library measured ({library})"], _ = compiled_chunk(
                su.step, 1, su.state, su.batch
            )
            conv_choice.use_file(None)

    times = interleaved(runs, su.state, su.batch, args.rounds)
    print(f"\n| convolutions | median ms | fastest ms | slowest ms |  ({args.rounds} rounds)")
    print("|---|---|---|---|")
    for k, ts in times.items():
        print(
            f"| {k} | {statistics.median(ts) * 1e3:.1f} | {min(ts) * 1e3:.1f} | "
            f"{max(ts) * 1e3:.1f} |"
        )


if __name__ == "__main__":
    main()
