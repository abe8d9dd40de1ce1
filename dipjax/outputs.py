"""What a run leaves on disk, for every kind of run, through one writer with one summary schema.

Layout: one folder per image (the run folder itself when there is one image, else a sub-folder
named after the file), one folder per fit (the image folder with one seed, else ``seed_S/``).
A fit folder holds output.png, output_avg.png, output_es.png (early stopping), metrics.jsonl
(one line per iteration, appended as the run goes), curves.png and snapshots/; an image folder
degraded.png, comparison.png and, with several seeds, mean.png, std.png and std.npy. The run
folder holds summary.json (the settings and, as lists, its images and fits), metrics.csv and
metrics.json (one row per fit, and a ``mean`` row per image with several seeds). Every file is
written atomically.
"""

from __future__ import annotations

import csv
import dataclasses
import io as _io
import json
import pathlib
import platform
from importlib import metadata

import numpy as np

from dipjax.ensemble import ensemble_stats, pooled_posterior, uncertainty_map
from dipjax.figures import comparison_figure, curves_figure
from dipjax.io import atomic_write_bytes, finite_json, save_png

PACKAGES = ("dipjax", "jax", "jaxlib", "flax", "optax", "numpy")
COLUMNS = (
    "image",
    "path",
    "seed",
    "width",
    "height",
    "iters_done",
    "psnr_gt",
    "psnr_gt_avg",
    "ssim",
    "psnr_baseline",
    "psnr_gt_es",
    "es_iter",
    "psnr_gt_post",
    "posterior_samples",
    "psnr_mean",
)


def json_bytes(obj) -> bytes:
    return (json.dumps(finite_json(obj, _jsonable), indent=1) + "\n").encode()


def _jsonable(o):
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    return str(o)


def hyperparameters(preset) -> dict:
    """Every field of ``preset``, with SGLD's burn-in resolved."""
    out = {f.name: getattr(preset, f.name) for f in dataclasses.fields(preset)}
    if preset.sgld:
        out["sgld_burn_in"] = preset.burn_in
    return out


class RunWriter:
    """Writes a run into ``out``. ``problems`` and ``names`` (a folder name per problem),
    ``paths`` (the file each came from, or None), ``seeds``; ``settings``: JSON-able facts for
    summary.json (preset, inputs, ...). ``nested``: one folder per image even for one image
    (a process's share of a distributed run)."""

    def __init__(self, out, problems, names, paths, seeds, settings: dict, nested: bool = False):
        self.out, self.problems, self.names, self.paths = pathlib.Path(out), problems, names, paths
        self.nested = nested or len(problems) > 1
        self.seeds, self.settings = list(seeds), settings
        self.fits: dict = {}
        self._started: set = set()

    def image_folder(self, index: int) -> pathlib.Path:
        return self.out / self.names[index] if self.nested else self.out

    def fit_folder(self, index: int, seed: int) -> pathlib.Path:
        folder = self.image_folder(index)
        return folder if len(self.seeds) == 1 else folder / f"seed_{seed}"

    def on_chunk(self, progress) -> None:
        """Append each fit's new rows to its metrics.jsonl (a resumed fit first drops rows past
        its checkpoint)."""
        for (i, s), rows in progress.rows.items():
            path = self.fit_folder(i, s) / "metrics.jsonl"
            if (i, s) not in self._started:
                self._started.add((i, s))
                path.parent.mkdir(parents=True, exist_ok=True)
                first = rows[0]["iter"]
                old = path.read_text().splitlines() if path.is_file() else []
                kept = [line for line in old if line and json.loads(line)["iter"] < first]
                atomic_write_bytes(path, "".join(line + "\n" for line in kept).encode())
            with open(path, "a") as f:
                f.write("".join(json.dumps(finite_json(r)) + "\n" for r in rows))

    def on_fit(self, r) -> None:
        """Write a fit's files; once every seed of its image is in, the image's files."""
        self.fits[r.key] = r
        folder = self.fit_folder(r.index, r.seed)
        folder.mkdir(parents=True, exist_ok=True)
        save_png(folder / "output.png", r.output)
        save_png(folder / "output_avg.png", r.output_avg)
        if r.early_stop is not None and r.early_stop["iter"] > 0:
            save_png(folder / "output_es.png", r.early_stop["output"])
        if r.posterior is not None and r.posterior["samples"] > 0:
            _write_posterior(folder, r.posterior)
        if r.snapshots:
            (folder / "snapshots").mkdir(exist_ok=True)
            for it, img in r.snapshots.items():
                save_png(folder / "snapshots" / f"iter_{it:06d}.png", img)
        atomic_write_bytes(
            folder / "metrics.jsonl",
            "".join(json.dumps(finite_json(h)) + "\n" for h in r.history).encode(),
        )
        atomic_write_bytes(folder / "curves.png", curves_figure(r.history))
        fits = [self.fits.get((r.index, s)) for s in self.seeds]
        if all(fits):
            self._write_image(r.index, fits)

    def _write_image(self, index: int, fits: list) -> None:
        p, folder = self.problems[index], self.image_folder(index)
        if p.degraded is not None:
            save_png(folder / "degraded.png", p.degraded)
        if len(fits) == 1:
            atomic_write_bytes(
                folder / "comparison.png",
                comparison_figure(p, fits[0].output_avg, es=fits[0].early_stop),
            )
            return
        stats = ensemble_stats(fits)
        save_png(folder / "mean.png", stats["mean"])
        save_png(folder / "std.png", uncertainty_map(stats["std"]))
        atomic_write_bytes(folder / "std.npy", _npy(stats["std"]))
        atomic_write_bytes(
            folder / "comparison.png",
            comparison_figure(p, stats["mean"], f"mean of {len(fits)} seeds"),
        )
        if all(f.posterior is not None and f.posterior["samples"] > 0 for f in fits):
            _write_posterior(folder, pooled_posterior([f.posterior for f in fits]))

    def rows(self) -> list:
        """One metrics row per fit written so far, and a ``mean`` row per ensemble."""
        rows = []
        for i, p in enumerate(self.problems):
            fits = [self.fits[(i, s)] for s in self.seeds if (i, s) in self.fits]
            base = {
                "image": self.names[i],
                "path": self.paths[i],
                "width": p.out_hw[1],
                "height": p.out_hw[0],
            }
            for f in fits:
                rows.append(
                    dict(
                        base,
                        seed=f.seed,
                        iters_done=f.iters_done,
                        es_iter=(f.early_stop["iter"] or None) if f.early_stop else None,
                        posterior_samples=f.posterior["samples"] if f.posterior else None,
                        **{k: f.final.get(k) for k in COLUMNS if k in f.final},
                    )
                )
            if len(fits) == len(self.seeds) > 1 and p.gt is not None:
                rows.append(
                    dict(base, seed="mean", psnr_mean=ensemble_stats(fits)["final"]["psnr_mean"])
                )
        return rows

    def summary(self, run=None, timing=None, indices=None) -> dict:
        """The run's (or, with ``indices``, some images') summary: settings, images, fits."""
        import jax

        indices = range(len(self.problems)) if indices is None else indices
        images, fits = [], []
        for i in indices:
            p, done = (
                self.problems[i],
                [self.fits[(i, s)] for s in self.seeds if (i, s) in self.fits],
            )
            ens = ensemble_stats(done)["final"] if len(done) == len(self.seeds) > 1 else None
            images.append(
                {
                    "name": self.names[i],
                    "path": self.paths[i],
                    "notes": p.notes,
                    "width": p.out_hw[1],
                    "height": p.out_hw[0],
                    "ensemble": ens,
                }
            )
            fits += [
                {
                    "image": self.names[i],
                    "seed": f.seed,
                    "iters_done": f.iters_done,
                    "interrupted": f.interrupted,
                    "final": f.final,
                    "last": f.history[-1] if f.history else None,
                    "early_stop": None
                    if f.early_stop is None
                    else {k: v for k, v in f.early_stop.items() if k != "output"},
                    "posterior_samples": f.posterior["samples"] if f.posterior else None,
                    "compile_s": f.compile_s,
                    "step_s": f.step_s,
                }
                for f in done
            ]
        dev = jax.local_devices()[0]
        out = dict(
            self.settings,
            seeds=self.seeds,
            images=images,
            fits=fits,
            versions=_versions(),
            python=platform.python_version(),
            device={"platform": dev.platform, "kind": dev.device_kind, "count": jax.device_count()},
        )
        if run is not None:
            from dipjax.ops import conv_choice

            out.update(
                conv_library=conv_choice.libraries_used() or None,
                strategy=run.strategy,
                batches=run.batches,
                devices=run.devices,
                groups=[[self.names[i] for i in g] for g in run.groups],
                compile_s=run.compile_s,
                step_s=run.step_s,
                notes=run.notes,
                interrupted=run.interrupted,
            )
        if timing is not None:
            out["timing"] = timing
        return out

    def write_run(self, run, timing: dict, part: str = "") -> None:
        """summary.json and metrics.csv/json for the whole run (``part``: a file-name suffix for
        one process's share of a distributed run), and each image folder's summary.json."""
        if self.nested:
            for i in range(len(self.problems)):
                if any((i, s) in self.fits for s in self.seeds):
                    atomic_write_bytes(
                        self.image_folder(i) / "summary.json",
                        json_bytes(self.summary(run, indices=[i])),
                    )
        write_table(self.out, self.rows(), "metrics" + part)
        atomic_write_bytes(self.out / f"summary{part}.json", json_bytes(self.summary(run, timing)))


def _write_posterior(folder: pathlib.Path, post: dict) -> None:
    """posterior_mean/std as pictures and as raw arrays."""
    save_png(folder / "posterior_mean.png", post["mean"])
    save_png(folder / "posterior_std.png", uncertainty_map(post["std"]))
    atomic_write_bytes(folder / "posterior_mean.npy", _npy(post["mean"]))
    atomic_write_bytes(folder / "posterior_std.npy", _npy(post["std"]))


def _npy(x) -> bytes:
    buf = _io.BytesIO()
    np.save(buf, np.asarray(x, np.float32))
    return buf.getvalue()


def write_table(out: pathlib.Path, rows: list, stem: str = "metrics") -> None:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    atomic_write_bytes(out / f"{stem}.csv", buf.getvalue().encode())
    atomic_write_bytes(out / f"{stem}.json", json_bytes(rows))


def _versions() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def gather_tables(out: pathlib.Path, count: int, timeout_s: float = 3600.0) -> None:
    """Process 0 of a distributed run: wait for every process's metrics table, write the
    combined metrics.csv/json (rows sorted by image, then seed)."""
    import time

    from dipjax.io import InputError

    parts = [out / f"metrics.process{k}.json" for k in range(count)]
    deadline = time.monotonic() + timeout_s
    while not all(p.is_file() for p in parts):
        if time.monotonic() > deadline:
            missing = [p.name for p in parts if not p.is_file()]
            raise InputError(f"--distributed: gave up waiting for {', '.join(missing)} in {out}")
        time.sleep(0.5)
    rows = [r for p in parts for r in json.loads(p.read_text())]
    rows.sort(key=lambda r: (r["image"], str(r["seed"])))
    write_table(out, rows)
