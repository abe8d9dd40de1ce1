"""Variants of a CPU preset's step on the packaged image: compile time and step time per
convolution implementation and strip size, or per XLA compiler option; or a whole fit with
another net width.

    python experiments/step_variants.py [--preset superres-fast] [--side 0]
        [--variants fast:2048 xla:2048 ...]      # conv impl : STRIP_PIXELS (half at 256 ch.)
        [--options '{}' '{"xla_cpu_use_xnnpack": true}' '{"conv": "xla", ...}' ...]
        [--options '{}' '{"crop_strip_pixels": 2048}']  # crop's weight-gradient strips
        [--options '{}' '{"precision": "bf16"}']  # the convolutions in bfloat16
        [--fit --channels 16 --iters 1200]
        [--donate [--rounds 8]]                  # the state donated or not

The image is the whole packaged 256x256 picture (``--side N``: its top-centre N x N), degraded
by the preset's task. Variants compile the one-step chunk in this process and time 8 calls after
a warm-up (median; ``bench_batching.timed_runner``). Options (to ``Lowered.compile``, over the
step's own ``conv.codegen_options()``: '{}' is the product's step, '{"xla_cpu_use_fusion_emitters":
true}' XLA's default emitter) are all compiled first (a set's "conv" key: the convolution
implementation it is traced with, or a variant such as "strips-2048" for every layer that has
it; "crop_strip_pixels": the pixels per strip of every crop weight gradient, whatever the
layer's channels; "precision": "bf16", the convolutions in bfloat16; "conv_constants": {name:
value}, constants of ``dipjax.ops.conv`` set while tracing, e.g. {"WINOGRAD_PIXELS": 1e9} for the
rules without Winograd), then timed interleaved (--rounds rounds; median, fastest, slowest).
``--donate`` compiles the one-step function with the state donated and not, counts the copies
of state leaves in each optimized HLO, and times them interleaved (--rounds rounds of 4 calls,
median). ``--fit`` runs the preset with ``--channels`` in every layer of its skip net through
``dipjax.engine.run`` and prints wall, compile, step and PSNR every 100 iterations.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from bench_batching import timed_runner  # noqa: E402

from dipjax import api, build, engine  # noqa: E402
from dipjax.ops import conv  # noqa: E402
from dipjax.presets import _fast_skip, get_preset  # noqa: E402
from dipjax.step import make_runner  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="superres-fast")
    ap.add_argument("--side", type=int, default=0)
    ap.add_argument("--variants", nargs="*", default=[])
    ap.add_argument("--options", nargs="*", default=[])
    ap.add_argument("--fit", action="store_true")
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--iters", type=int, default=0)
    ap.add_argument("--donate", action="store_true")
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args(argv)
    p = get_preset(args.preset).replace(demo_side=args.side)
    if args.fit:
        p = p.replace(net=_fast_skip(args.channels, 4, 4), iters=args.iters or p.iters)
    prob = api.prepare(p.task, p, None)
    print(f"{p.name}, image {prob.out_hw}, jax {jax.__version__} on {jax.default_backend()}")
    if args.fit:
        t = time.perf_counter()
        f = engine.run([prob], p, [0]).fits[0]
        wall = time.perf_counter() - t
        print(
            f"{args.channels} channels, {p.iters} iterations: wall {wall:.1f} s, "
            f"compile {f.compile_s:.1f} s, step {f.step_s * 1e3:.1f} ms, {json.dumps(f.final)}"
        )
        for row in f.history[99::100]:
            print(row["iter"], round(row["psnr_gt"], 2), round(row["psnr_gt_avg"], 2))
        return
    su = build.setup([prob], p, [(0, 0)])
    if args.donate:
        return donation(su, args.rounds)
    state, default_strip = su.state, conv.STRIP_PIXELS
    for v in args.variants:
        impl, strip = v.split(":")
        conv.STRIP_PIXELS = int(strip)
        c, s, _, state = timed_runner(su.step, state, su.batch, 1, None, 8, impl)
        print(f"{v:14s} compile {c:6.2f} s  step {s * 1e3:7.1f} ms", flush=True)
    conv.STRIP_PIXELS = default_strip
    if args.options:
        options_interleaved(su, args.options, args.rounds)


def preset_step_parser(doc: str, rounds: int) -> argparse.ArgumentParser:
    """--preset (denoise), --side (128) and --rounds of the experiments that time one preset's
    step on the packaged image's top-centre crop."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--preset", default="denoise")
    ap.add_argument("--side", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--tiny", action="store_true", help="the preset with a tiny generator (smoke)")
    return ap


def one_fit_setup(preset: str, side: int, tiny: bool = False, **fields):
    """(preset, problem, ``build.Setup``) of one fit of ``preset`` (with ``fields`` replaced) on
    the packaged image's top-centre side x side crop (side 0: the whole image); ``tiny``: with
    ``bench_reference.tiny_net()`` for its generator."""
    p = get_preset(preset).replace(demo_side=side, **fields)
    if tiny:
        from bench_reference import with_tiny_net

        p = with_tiny_net(p)
    prob = api.prepare(p.task, p, None)
    return p, prob, build.setup([prob], p, [(0, 0)])


def interleaved(runs: dict, state, batch, rounds: int) -> dict:
    """{name: seconds per step of each round} for compiled one-step chunks ``runs`` ({name: run},
    same arguments), timed in ``rounds`` rounds that each run every chunk once from ``state``
    (a warm-up call, then 2 calls timed), so that the machine's slow moments fall on all."""
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            s, m = run(state, batch)
            jax.block_until_ready(m)
            t = time.perf_counter()
            for _ in range(2):
                s, m = run(s, batch)
            jax.block_until_ready(m)
            times[name].append((time.perf_counter() - t) / 2)
    return times


def options_interleaved(su, options, rounds):
    """The one-step chunk compiled with each XLA option set, then timed in --rounds rounds that
    each run every compiled chunk once (a warm-up call, then 2 calls timed): median, fastest and
    slowest ms, so that the machine's slow moments fall on every option set alike. An option
    set's ``"conv"`` key, if any, is the convolution implementation it is traced with, or a
    variant (``conv.Layer.variants``) forced on every tunable layer that has it; its
    ``"crop_strip_pixels"`` key, the pixels per strip of every ``crop`` weight gradient, whatever
    the layer's channels (``conv.crop_strip_pixels``); its ``"precision"`` key, the convolutions'
    (``conv.PRECISIONS``, for a preset in float32); its ``"conv_constants"``, module constants of
    ``conv`` set while tracing."""
    runs = {}
    for o in options:
        t = time.perf_counter()
        flags = json.loads(o)
        name = flags.pop("conv", "auto")
        precision = flags.pop("precision", "f32")
        # conv's module attributes to set while tracing, crop's strip sizes among them
        overrides = flags.pop("conv_constants", {})
        if "crop_strip_pixels" in flags:
            strip = int(flags.pop("crop_strip_pixels"))
            overrides["crop_strip_pixels"] = lambda channels: strip
        with conv.recording() as seen, conv.conv_precision(precision):
            jax.eval_shape(su.step, su.state, su.batch)
        impl = name if name in conv.CONV_IMPLS else "fast"
        # a variant name: every tunable layer that has it computed that way, the rest by the rules
        forced = {la.key: name for la in seen if la.tunable() and name in la.variants()}
        product = {k: getattr(conv, k) for k in overrides}
        for k, v in overrides.items():
            setattr(conv, k, v)
        try:
            with (
                conv.conv_impl(impl),
                conv.conv_choices(forced if impl != name else None),
                conv.conv_precision(precision),
            ):
                lowered = make_runner(su.step, 1).lower(su.state, su.batch)
        finally:
            for k, v in product.items():
                setattr(conv, k, v)
        runs[o] = lowered.compile({**conv.codegen_options(), **flags})
        print(f"{o:60s} compile {time.perf_counter() - t:6.2f} s", flush=True)
    for o, ts in interleaved(runs, su.state, su.batch, rounds).items():
        print(
            f"{o:60s} step median {statistics.median(ts) * 1e3:7.1f} ms  "
            f"fastest {min(ts) * 1e3:7.1f}  slowest {max(ts) * 1e3:7.1f}"
        )


def donation(su, rounds):
    """One step jitted with the state donated and not: state copies in the HLO, median ms."""
    runs = {}
    for name, donate in (("donated", 0), ("not donated", ())):
        state = jax.tree_util.tree_map(jnp.copy, su.state)
        lowered = jax.jit(su.step, donate_argnums=donate).lower(state, su.batch)
        run = lowered.compile(conv.codegen_options())
        copies = len(re.findall(r" copy\(%state_", run.as_text()))
        for _ in range(2):
            state, m = run(state, su.batch)
        jax.block_until_ready(m)
        runs[name] = [run, state, [], copies]
    for _ in range(rounds):
        for v in runs.values():
            t = time.perf_counter()
            for _ in range(4):
                v[1], m = v[0](v[1], su.batch)
            jax.block_until_ready(m)
            v[2].append((time.perf_counter() - t) / 4)
    for name, (_, _, times, copies) in runs.items():
        ms = [round(t * 1e3, 1) for t in times]
        print(f"{name:12s} state copies {copies:4d}  step {statistics.median(ms):7.1f} ms  {ms}")


if __name__ == "__main__":
    main()
