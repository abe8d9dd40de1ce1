"""Whole runs, not steps: the reference's notebook loop as a plain script against
``python -m dipjax.fit`` as a user runs it, same recipe, image and iteration count.

    python experiments/bench_end_to_end.py [--reference-dir DIR] [--presets superres-fast]
        [--size 256] [--iters 300] [--threads N] [--out experiments/out/bench_end_to_end]

DIR is your checkout of DmitryUlyanov/deep-image-prior; its ``models`` package (the generator
and the Lanczos downsampler) is imported from there at run time (needs the ``torch`` extra).
Without it, dipjax is timed alone.

The input: the packaged image, centre-cropped to --size and downscaled x4 as the reference
does (``dipjax.io.sr_pair``), written as lr.png / hr.png that both sides read. The reference side
is the super-resolution notebook's loop: every iteration perturbs the input, runs the net and the
downsampler, backpropagates the MSE, reads the loss and both outputs back to the host and
computes PSNR against the LR and HR images (as its closure does), then steps Adam; its plotting
is left out. dipjax runs twice in fresh processes with an empty compile cache: the first run
compiles, the second loads from the cache. Each run is a subprocess timed from its start to its
exit; 'first iteration' is when its first iteration's result was on the host.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from machine import describe, summary_line  # noqa: E402


def reference_worker(args) -> None:
    """Runs in its own process: the notebook's loop; prints one JSON line of timings."""
    start = time.perf_counter()
    sys.path.insert(0, args.reference_dir)
    import models
    import numpy as np
    import torch
    from models.downsampler import Downsampler
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from dipjax.presets import get_preset

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    p = get_preset(args.preset)
    load = lambda name: (
        np.asarray(Image.open(pathlib.Path(args.data) / name), np.float32).transpose(2, 0, 1)[None]
        / 255.0
    )
    lr_np, hr_np = load("lr.png"), load("hr.png")
    spec = p.net
    net = getattr(models, spec.constructor)(*spec.args, **dict(spec.kwargs))
    z = torch.rand(1, p.input_depth, hr_np.shape[2], hr_np.shape[3]) * 0.1
    noise, lr_t = z.clone(), torch.from_numpy(lr_np)
    down = Downsampler(3, p.scale, p.sr_kernel, phase=0.5, preserve_size=True)
    opt = torch.optim.Adam(net.parameters(), lr=p.lr)
    mse = torch.nn.MSELoss()
    psnr = lambda a, b: float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))
    first = None
    for i in range(args.iters):
        opt.zero_grad()
        out_hr = net(z + noise.normal_() * p.reg_noise_std)
        out_lr = down(out_hr)
        loss = mse(out_lr, lr_t)
        loss.backward()
        loss.item()
        psnr(lr_np, out_lr.detach().numpy())
        psnr(hr_np, out_hr.detach().numpy())
        opt.step()
        if first is None:
            first = time.perf_counter() - start
    print(json.dumps({"first_iteration_s": first, "loop_s": time.perf_counter() - start}))


def run_reference(args) -> dict:
    t = time.perf_counter()
    r = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            "--reference-dir",
            args.reference_dir,
            "--data",
            str(args.data),
            "--preset",
            args.preset,
            "--iters",
            str(args.iters),
            "--threads",
            str(args.threads),
        ],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"reference run failed:\n{r.stderr[-3000:]}")
    got = json.loads(r.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "first_iteration_s": got["first_iteration_s"] + wall - got["loop_s"]}


def run_dipjax(args, cache: str, tag: str) -> dict:
    out = args.out / f"dipjax-{args.preset}-{tag}"
    env = dict(os.environ, DIPJAX_COMPILE_CACHE=cache, OMP_NUM_THREADS=str(args.threads))
    t = time.perf_counter()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dipjax.fit",
            "--preset",
            args.preset,
            "--image",
            str(args.data / "lr.png"),
            "--gt",
            str(args.data / "hr.png"),
            "--iters",
            str(args.iters),
            "--quiet",
            "--overwrite",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"dipjax run failed:\n{r.stderr[-3000:]}")
    s = json.loads((out / "summary.json").read_text())
    return {
        "wall_s": wall,
        "first_iteration_s": s["timing"]["first_chunk_at"],
        "timing": s["timing"],
        "step_s": s["step_s"],
        "psnr_gt": s["fits"][0]["final"]["psnr_gt"],
    }


def make_inputs(folder: pathlib.Path, size: int, scale: int) -> None:
    sys.path.insert(0, str(ROOT))
    from dipjax.io import centre_crop, default_image, save_png, sr_pair

    hr, lr = sr_pair(centre_crop(default_image(), size), scale)
    folder.mkdir(parents=True, exist_ok=True)
    save_png(folder / "hr.png", hr)
    save_png(folder / "lr.png", lr)


def table(rows) -> str:
    lines = [
        "| preset | iters | side | wall s | first iteration s | compile s | steps s | "
        "other parts s | step ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r.get("timing")
        cells = ["", "", "", ""]
        if t:
            rest = sum(
                v
                for k, v in t.items()
                if k not in ("compile", "steps", "total") and not k.endswith("_at")
            )
            cells = [
                f"{t['compile']:.1f}",
                f"{t['steps']:.1f}",
                f"{rest:.1f}",
                f"{r['step_s'] * 1e3:.1f}",
            ]
        lines.append(
            f"| {r['preset']} | {r['iters']} | {r['side']} | {r['wall_s']:.1f} | "
            f"{r['first_iteration_s']:.1f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def plot(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['side']}\n{r['preset']}" for r in rows]
    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 2, 3.5))
    ax.bar(labels, [r["wall_s"] for r in rows], color="lightgrey", label="wall")
    ax.bar(
        labels,
        [r["first_iteration_s"] for r in rows],
        color="grey",
        label="until the first iteration",
    )
    ax.set_ylabel("seconds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference-dir")
    ap.add_argument("--presets", nargs="+", default=["superres-fast"])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument(
        "--out", type=pathlib.Path, default=ROOT / "experiments" / "out" / "bench_end_to_end"
    )
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=pathlib.Path, help=argparse.SUPPRESS)
    ap.add_argument("--preset", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return reference_worker(args)
    if args.reference_dir and not (pathlib.Path(args.reference_dir) / "models").is_dir():
        raise SystemExit(
            f"--reference-dir {args.reference_dir}: not a deep-image-prior "
            f"checkout (no models/ folder)"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    machine = describe(with_torch=bool(args.reference_dir))
    machine.update(threads=args.threads, python=platform.python_version())
    print(json.dumps(machine), flush=True)
    rows = []
    for name in args.presets:
        args.preset = name
        args.data = args.out / f"inputs-{args.size}"
        make_inputs(args.data, args.size, 4)
        common = {"preset": name, "iters": args.iters}
        if args.reference_dir:
            rows.append(dict(common, side="reference", **run_reference(args)))
            print(json.dumps(rows[-1]), flush=True)
        with tempfile.TemporaryDirectory() as cache:
            for tag in ("first run", "second run (cache)"):
                rows.append(
                    dict(common, side=f"dipjax, {tag}", **run_dipjax(args, cache, tag.split()[0]))
                )
                print(json.dumps(rows[-1]), flush=True)
    (args.out / "results.json").write_text(
        json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "machine": machine, "rows": rows},
            indent=1,
        )
    )
    md = f"{summary_line(machine)}; {args.threads} threads\n\n" + table(rows)
    (args.out / "table.md").write_text(md + "\n")
    plot(rows, args.out / "bench_end_to_end.png")
    print("\n" + md)


if __name__ == "__main__":
    main()
