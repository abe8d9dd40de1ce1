"""Seconds per iteration: the PyTorch reference's step against dipjax's, same machine, same run.

    python experiments/bench_reference.py [--reference-dir DIR] [--sizes 64 128 256]
        [--recipes denoise superres inpaint] [--iters 10] [--warmup 3] [--threads N]
        [--precision f32 bf16] [--conv library|measured|rules|standin] [--pairs N]
        [--out experiments/out/bench_reference]

DIR is your checkout of DmitryUlyanov/deep-image-prior; its ``models`` package is imported from
there at run time (needs ``pip install -e '.[torch]'``). Without it, dipjax is timed alone.

Each (recipe, size, framework) runs in its own subprocess, so that peak memory (the process's
maximum resident set) and thread pools are its own. Both sides run the same generator (the
notebook's, built from the same NetSpec), the same input depth and perturbation, loss, Adam
settings and forward operator: ``denoise`` (identity, F16 net, reg noise 1/30), ``superres``
(x4 Lanczos-2 downsampler, the same net at HR size, reg noise 0.03), ``inpaint`` (mask, kate
net, reg noise 0.03). The reference side is its core step (zero_grad, perturb, forward, loss,
backward, Adam); dipjax's is the product's jitted chunk of steps, which also keeps the output
average, PSNRs and the NaN guard. The reference's time is the median over --iters iterations
after --warmup; dipjax's the median of 3 rounds of --iters iterations, each round's chunks
dispatched back to back with one wait at its end (the command line dispatches the next chunk
before it reads the last one's metrics, so its host work overlaps the device's); its compile
time is reported apart, and so is the time spent measuring its convolution layers' variants
(``dipjax.ops.conv_choice``; once per machine, kept in ``--out``): by default (``--conv
library``, as the command line by default) the convolution library, each layer's rule variant
timed under YNNPACK and Eigen; ``--conv measured``, as the command line's ``--measure-convs``,
every variant under each; ``--conv rules`` keeps the fixed rules and XLA's default library.
``--conv standin`` times what the rest of each step costs: on both sides every convolution is
replaced by the same cheap stand-in of its shapes (``standin_conv``), which moves about as much
memory as a convolution's input and output and does no arithmetic.
``--precision``: dipjax is timed once per precision of its convolutions (``--precision`` of the
command line; the reference always runs float32). ``--pairs N``: each side runs N times,
alternating, and the speed-up is the median of the N paired ratios. FLOPs
per dipjax step come from XLA's cost analysis; the caption
(``experiments/machine.py``) gives the CPU, its instruction sets and both frameworks' float32
and bfloat16 2048x2048 matmul rates, timed in this process on all its threads.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from machine import describe, summary_line  # noqa: E402

RECIPES = {
    "denoise": ("denoising_F16", "identity", 1 / 30),
    "superres": ("sr_x4", "downsample", 0.03),
    "inpaint": ("inpaint_kate", "mask", 0.03),
}


def tiny_net():
    """A 3-scale, 8-channel skip net with input depth 4 (smoke tests of the experiments)."""
    from dipjax.netspec import NetSpec

    return NetSpec.of(
        "skip",
        4,
        3,
        num_channels_down=[8] * 3,
        num_channels_up=[8] * 3,
        num_channels_skip=[2] * 3,
        upsample_mode="bilinear",
        pad="reflection",
    )


def with_tiny_net(preset):
    """``preset`` with ``tiny_net()`` for its generator (and its input depth, 4)."""
    return preset.replace(net=tiny_net(), input_depth=4)


def net_spec(recipe, tiny: bool):
    """The recipe's generator, or (``--tiny``) ``tiny_net()``."""
    from dipjax.netspec import RECIPE_NETS

    return tiny_net() if tiny else RECIPE_NETS[RECIPES[recipe][0]]


def problem_arrays(recipe, size, depth, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    z = (rng.uniform(size=(1, size, size, depth)) * 0.1).astype(np.float32)
    img = rng.uniform(size=(1, size, size, 3)).astype(np.float32)
    mask = (rng.uniform(size=(1, size, size, 1)) < 0.5).astype(np.float32)
    target = img[:, ::4, ::4] if RECIPES[recipe][1] == "downsample" else img * mask
    return z, target, mask


def standin_conv(x, weight_mean, out, k, stride, padding, cat, channel_axis):
    """A convolution's stand-in for ``--conv standin``: of the input ``x`` (channels on
    ``channel_axis``: 1, NCHW, or -1, NHWC) the pixels under the kernel's centre, its first
    ``out`` channels (repeated, ``cat(list, axis)``, when it has fewer), times the kernel's
    mean. Same output shape as the convolution and gradients to both operands, without its
    arithmetic."""
    h, w = x.shape[2:] if channel_axis == 1 else x.shape[1:3]
    ho, wo = ((n + 2 * padding - k) // stride + 1 for n in (h, w))
    off = (k - 1) // 2 - padding
    rows = slice(off, off + (ho - 1) * stride + 1, stride)
    cols = slice(off, off + (wo - 1) * stride + 1, stride)
    y = x[:, :, rows, cols] if channel_axis == 1 else x[:, rows, cols, :]
    c = x.shape[channel_axis]
    if out > c:
        y = cat([y] * -(-out // c), channel_axis)
    return (y[:, :out] if channel_axis == 1 else y[..., :out]) * weight_mean


def reference_step(recipe, size, args):
    """The reference's step for (recipe, size) as a function of nothing, after --warmup calls."""
    sys.path.insert(0, args.reference_dir)
    import models
    import numpy as np
    import torch
    from models.downsampler import Downsampler

    if args.conv == "standin":

        def forward(self, x):
            y = standin_conv(
                x,
                self.weight.mean(),
                self.out_channels,
                self.kernel_size[0],
                self.stride[0],
                self.padding[0],
                torch.cat,
                1,
            )
            return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

        torch.nn.Conv2d.forward = forward

    torch.set_num_threads(args.threads)
    _, kind, reg = RECIPES[recipe]
    spec = net_spec(recipe, args.tiny)
    net = getattr(models, spec.constructor)(*spec.args, **dict(spec.kwargs))
    depth = spec.args[0]
    z, target, mask = (
        torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
        for a in problem_arrays(recipe, size, depth)
    )
    down = (
        Downsampler(3, 4, "lanczos2", phase=0.5, preserve_size=True)
        if kind == "downsample"
        else None
    )
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    noise = z.clone()
    mse = torch.nn.MSELoss()

    def step():
        opt.zero_grad()
        out = net(z + noise.normal_() * reg)
        pred = down(out) if down is not None else out * mask if kind == "mask" else out
        loss = mse(pred, target)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    return step


def worker_torch(recipe, size, args):
    import torch

    step = reference_step(recipe, size, args)
    times = []
    for _ in range(args.iters):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return {"step_s": statistics.median(times), "torch": torch.__version__}


def worker_jax(recipe, size, args):
    from dipjax import host_memory

    host_memory.keep_freed_memory()  # as the command line does (DIPJAX_MALLOC=system: not)
    import jax
    import numpy as np

    from dipjax import build, tasks
    from dipjax.ops import conv, conv_choice
    from dipjax.presets import get_preset
    from dipjax.step import compiled_chunk, default_chunk

    _, kind, reg = RECIPES[recipe]
    spec = net_spec(recipe, args.tiny)
    preset = get_preset(
        {"denoise": "denoise", "superres": "superres-x4", "inpaint": "inpaint-kate"}[recipe]
    ).replace(
        crop=0,
        init_style="modern",
        net=spec,
        input_depth=spec.args[0],
        precision=args.precision[0],
    )
    z, target, mask = problem_arrays(recipe, size, preset.input_depth)
    measure = {
        "identity": tasks.Measure(),
        "downsample": tasks.Measure("downsample", 4),
        "mask": tasks.Measure("mask"),
    }[kind]
    problem = tasks.Problem(
        recipe, measure, target[0], (size, size), mask=mask[0] if kind == "mask" else None
    )
    su = build.setup([problem], preset.replace(reg_noise_std=reg), [(0, 0)])
    batch, step, state = dict(su.batch, z=jax.numpy.asarray(z)), su.step, su.state
    # --conv library: as the command line by default, the convolution library measured on this
    # machine (the rules' variants timed under each); --conv measured: as with its
    # --measure-convs, every variant under each library; both kept in --out (measured by the
    # first run only), timed apart from the compile; --conv rules: the fixed rules, XLA's
    # default library.
    conv_choice.use_file(
        pathlib.Path(args.out) / conv_choice.FILE_NAME
        if args.conv in ("measured", "library")
        else None,
        every_variant=args.conv == "measured",
    )
    if args.conv == "standin":
        conv.conv_variant = lambda x, kernel, stride, padding, *_: standin_conv(
            x,
            kernel.mean(),
            kernel.shape[-1],
            kernel.shape[0],
            stride,
            padding,
            jax.numpy.concatenate,
            -1,
        )
    t = time.perf_counter()
    with conv.recording() as seen:
        jax.eval_shape(step, state, batch)
    conv_choice.measure_missing(seen)
    measure_s = time.perf_counter() - t
    library = conv_choice.library_for(seen) if conv_choice.current_file() else conv.LIBRARIES[0]
    n = default_chunk()
    chunks: dict = {}
    run, compile_s = compiled_chunk(step, n, state, batch, cache=chunks)
    flops = compiled_chunk(step, 1, state, batch, cache=chunks)[0].cost_analysis()
    flops = (flops[0] if isinstance(flops, list) else flops).get("flops")
    calls = max(1, -(-args.warmup // n))
    for _ in range(calls):
        state, m = run(state, batch)
        jax.block_until_ready(m)
    # Throughput as in the command line, where the next chunk is dispatched before the last one
    # is read back: the round's chunks dispatched back to back, one wait at its end.
    times, calls = [], max(1, -(-args.iters // n))
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(calls):
            state, m = run(state, batch)
        jax.block_until_ready(m)
        times.append((time.perf_counter() - t) / (n * calls))
    assert np.isfinite(np.asarray(m["loss"])).all()
    return {
        "step_s": statistics.median(times),
        "compile_s": compile_s,
        "measure_s": measure_s,
        "conv": args.conv,
        "library": library,
        "flops": flops,
        "chunk": n,
        "precision": preset.precision,
        "jax": jax.__version__,
    }


def worker(fw, recipe, size, args, out, env) -> dict:
    """One framework's result for (recipe, size), from its own subprocess: a dict, with
    'error' when it failed."""
    cmd = [sys.executable, __file__, "--worker", fw, recipe, str(size)]
    for flag in ("iters", "warmup", "threads", "conv"):
        cmd += [f"--{flag}", str(getattr(args, flag))]
    cmd += ["--out", str(out)]
    cmd += ["--reference-dir", args.reference_dir] if args.reference_dir else []
    cmd += ["--tiny"] if args.tiny else []
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    if r.returncode != 0 or not lines:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(lines[-1][len("RESULT ") :])


def _merged(results: list) -> dict:
    """One side's runs as one result: the median s/it and compile time (each run's kept in
    'step_s_runs'), the first run's measuring time (later runs read its measurements), the
    last run's peak memory (the first run's includes measuring)."""
    if any("error" in r for r in results):
        return next(r for r in results if "error" in r)
    merged = dict(results[0])
    merged["step_s_runs"] = [r["step_s"] for r in results]
    merged["step_s"] = statistics.median(merged["step_s_runs"])
    if all("compile_s" in r for r in results):
        merged["compile_s"] = statistics.median(r["compile_s"] for r in results)
    merged["peak_rss_mb"] = results[-1]["peak_rss_mb"]
    return merged


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference-dir")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument(
        "--recipes", nargs="+", default=["denoise", "superres", "inpaint"], choices=list(RECIPES)
    )
    ap.add_argument(
        "--recipe-sizes",
        type=int,
        nargs="+",
        default=[256],
        help="sizes for the superres and inpaint recipes",
    )
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument(
        "--pairs",
        type=int,
        default=1,
        help="run the reference and dipjax this many times each, alternating; the speed-up is "
        "the median of the paired ratios",
    )
    ap.add_argument("--tiny", action="store_true", help="a tiny generator (smoke tests)")
    ap.add_argument("--precision", nargs="+", default=["f32"], choices=["f32", "bf16"])
    ap.add_argument(
        "--conv",
        choices=["library", "measured", "rules", "standin"],
        default="library",
        help="dipjax's convolutions: the fixed rules' variants run by the library measured on "
        "this machine (the command line's default), every variant and the library measured, as "
        "its --measure-convs (both kept in --out), or the fixed rules under XLA's default "
        "library; standin: every convolution on both sides replaced by a cheap stand-in "
        "(the rest of the step)",
    )
    ap.add_argument("--out", default=str(ROOT / "experiments" / "out" / "bench_reference"))
    ap.add_argument(
        "--worker", nargs=3, metavar=("FRAMEWORK", "RECIPE", "SIZE"), help=argparse.SUPPRESS
    )
    return ap


def jobs(args) -> list:
    """[(recipe, size)]: the denoising net at --sizes, the other recipes at --recipe-sizes."""
    out = [("denoise", s) for s in args.sizes if "denoise" in args.recipes]
    return out + [(r, s) for r in args.recipes if r != "denoise" for s in args.recipe_sizes]


def main(argv=None):
    args = parser().parse_args(argv)
    args.precision = [p for p in ("f32", "bf16") if p in args.precision]
    if args.worker:
        fw, recipe, size = args.worker
        if fw.startswith("jax:"):
            fw, args.precision = "jax", [fw[4:]]
        res = (worker_torch if fw == "torch" else worker_jax)(recipe, int(size), args)
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("RESULT " + json.dumps(res))
        return
    if args.reference_dir and not (pathlib.Path(args.reference_dir) / "models").is_dir():
        sys.exit(
            f"--reference-dir {args.reference_dir}: no models/ folder there "
            f"(not a deep-image-prior checkout)"
        )
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    machine = describe(with_torch=bool(args.reference_dir))
    machine.update(threads=args.threads)
    print(json.dumps(machine), flush=True)
    rows = []
    for recipe, size in jobs(args):
        row = {"recipe": recipe, "size": size}
        sides = [f"jax:{p}" for p in args.precision]  # f32 first: its columns, then bf16's
        runs: dict = {}
        for _ in range(args.pairs):  # the sides alternate, so that the machine's drift is shared
            for fw in (["torch"] if args.reference_dir else []) + sides:
                key = "torch" if fw == "torch" else "jax" if fw == sides[0] else "jax_bf16"
                runs.setdefault(key, []).append(worker(fw, recipe, size, args, out, env))
        for key, rs in runs.items():
            row[key] = _merged(rs)
        for key, name in (("jax", "speedup"), ("jax_bf16", "speedup_bf16")):
            pairs = [
                t["step_s"] / j["step_s"]
                for t, j in zip(runs.get("torch", []), runs.get(key, []))
                if "step_s" in t and "step_s" in j
            ]
            if pairs:
                row[name], row[name + "_pairs"] = statistics.median(pairs), pairs
        j = row["jax"]
        if "step_s" in j and j.get("flops"):
            row["jax_gflops"] = j["flops"] / j["step_s"] / 1e9
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = [
        f"{summary_line(machine)}; {args.threads} threads; "
        + (
            f"{args.pairs} alternating runs of each side, s/it their median, speed-up the median "
            "of the paired ratios; "
            if args.pairs > 1
            else ""
        )
        + f"reference: median of {args.iters} "
        f"iterations after {args.warmup}; dipjax: median of 3 rounds of {args.iters} iterations "
        f"dispatched back to back, after {args.warmup}; dipjax's convolution variants "
        + {
            "library": "by fixed rules, run by the library measured on this machine",
            "measured": "measured per layer on this machine, with their library",
            "rules": "by fixed rules, run by XLA's default library (YNNPACK)",
            "standin": "replaced on both sides by a stand-in without arithmetic (standin_conv)",
        }[args.conv]
        + _libraries(rows)
        + f"; dipjax in {args.precision[0]}"
        + ("" if len(args.precision) < 2 else ", and in bf16 in the last two columns"),
        "",
        "| recipe | size | reference s/it | dipjax s/it | dipjax speed-up | dipjax compile s "
        "| peak RSS MB (ref / dipjax) | dipjax GFLOP/s (% of matmul peak) |"
        + (" dipjax bf16 s/it | bf16 speed-up |" if len(args.precision) > 1 else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|---|" if len(args.precision) > 1 else ""),
    ]
    f = lambda d, k, fmt: format(d[k], fmt) if d and k in d else "-"
    for r in rows:
        j, t = r["jax"], r.get("torch")
        lines.append(
            f"| {r['recipe']} | {r['size']} | {f(t, 'step_s', '.3f')} | {f(j, 'step_s', '.3f')} | "
            f"{format(r['speedup'], '.2f') + 'x' if 'speedup' in r else '-'} | "
            f"{f(j, 'compile_s', '.1f')} | {f(t, 'peak_rss_mb', '.0f')} / "
            f"{f(j, 'peak_rss_mb', '.0f')} | "
            + (
                f"{r['jax_gflops']:.1f} ({100 * r['jax_gflops'] / machine['xla_f32_gflops']:.0f} %)"
                if "jax_gflops" in r
                else "-"
            )
            + " |"
            + (
                f" {f(r.get('jax_bf16'), 'step_s', '.3f')} | "
                f"{format(r['speedup_bf16'], '.2f') + 'x' if 'speedup_bf16' in r else '-'} |"
                if len(args.precision) > 1
                else ""
            )
        )
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    (out / "results.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    plot(rows, out / "speed.png")
    print("\n" + table)


def _libraries(rows) -> str:
    """' (here: LIB)', or with several, which rows ran by which convolution library."""
    used = {}
    for r in rows:
        lib = (r.get("jax") or {}).get("library")
        if lib:
            used.setdefault(lib, []).append(f"{r['recipe']} {r['size']}")
    if not used:
        return ""
    if len(used) == 1:
        return f" (here: {next(iter(used))})"
    parts = [f"{lib} for {', '.join(where)}" for lib, where in used.items()]
    return f" (here: {'; '.join(parts)})"


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    den = [r for r in rows if r["recipe"] == "denoise"]
    if not den:
        return
    fig, ax = plt.subplots(figsize=(5, 3.5))
    sizes = [r["size"] for r in den]
    for fw, label in (("torch", "reference (PyTorch)"), ("jax", "dipjax")):
        ys = [r.get(fw, {}).get("step_s") for r in den]
        if any(y is not None for y in ys):
            ax.plot(sizes, ys, "o-", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("image side (px), denoising net")
    ax.set_ylabel("seconds per iteration")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
