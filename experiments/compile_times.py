"""Compile time of the command line's runs: the first run of a preset (empty compile cache)
against the second (the cache filled by the first), per preset and chunk length.

    python experiments/compile_times.py [--presets denoise-fast superres-fast ...]
        [--chunks 1] [--iters 100] [--out experiments/out/compile_times]

Each run is ``python -m dipjax.fit --preset P --iters N --chunk C`` on the packaged image, in a
fresh process; the figures are its summary.json ``timing`` block (compile, steps, total wall)
and ``step_s`` (median seconds per iteration after compilation).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from machine import describe, summary_line  # noqa: E402

FAST = [
    "denoise-fast",
    "superres-fast",
    "inpaint-fast",
    "restore-fast",
    "flash-no-flash-fast",
    "deblur-fast",
    "denoise-dd-fast",
    "inpaint-dd-fast",
]


def one_run(preset, iters, chunk, cache, out) -> dict:
    env = dict(os.environ, DIPJAX_COMPILE_CACHE=cache)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dipjax.fit",
            "--preset",
            preset,
            "--iters",
            str(iters),
            "--chunk",
            str(chunk),
            "--quiet",
            "--overwrite",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    if r.returncode:
        raise SystemExit(f"{preset}: run failed\n{r.stderr[-3000:]}")
    s = json.loads((out / "summary.json").read_text())
    return {
        "compile_s": s["timing"]["compile"],
        "prepare_s": s["timing"]["prepare"],
        "host_s": s["timing"]["host"],
        "wall_s": s["timing"]["total"],
        "steps_s": s["timing"]["steps"],
        "step_s": s["step_s"],
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=FAST)
    ap.add_argument("--chunks", type=int, nargs="+", default=[1])
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument(
        "--out", type=pathlib.Path, default=ROOT / "experiments" / "out" / "compile_times"
    )
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = describe(with_torch=False)
    print(json.dumps({"machine": machine, "iters": args.iters}), flush=True)
    rows = []
    for preset in args.presets:
        for chunk in args.chunks:
            with tempfile.TemporaryDirectory() as cache:
                first = one_run(preset, args.iters, chunk, cache, args.out / "run")
                second = one_run(preset, args.iters, chunk, cache, args.out / "run")
            rows.append({"preset": preset, "chunk": chunk, "first": first, "second": second})
            print(json.dumps(rows[-1]), flush=True)
    (args.out / "results.json").write_text(
        json.dumps({"machine": machine, "iters": args.iters, "rows": rows}, indent=1)
    )
    print(f"\n{summary_line(machine)}; {args.iters} iterations\n")
    print(
        "| preset | chunk | compile s, first run | compile s, second run | second / first "
        "| prepare + host s, first / second | step ms | wall s, first run | wall s, second run |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f, s = r["first"], r["second"]
        print(
            f"| {r['preset']} | {r['chunk']} | {f['compile_s']:.1f} | {s['compile_s']:.1f} | "
            f"{s['compile_s'] / f['compile_s']:.0%} | {f['prepare_s'] + f['host_s']:.1f} / "
            f"{s['prepare_s'] + s['host_s']:.1f} | {f['step_s'] * 1e3:.0f} | "
            f"{f['wall_s']:.1f} | {s['wall_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
