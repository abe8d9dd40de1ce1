"""The Python API: ``fit`` runs one prepared problem, ``fit_image`` prepares and runs a task.

    import dipjax
    res = dipjax.fit_image("denoise", "noisy.png", preset="denoise-fast")
    res.output_avg  # (H, W, C) float32 in [0, 1]
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import statistics
from typing import Callable, Optional

import jax
import numpy as np

from dipjax import io, memory, tasks
from dipjax.inputs import make_input
from dipjax.io import InputError
from dipjax.metrics import psnr_np, ssim
from dipjax.presets import Preset, get_preset, net_with_io
from dipjax.step import (
    default_chunk,
    init_state,
    make_optimizer,
    make_render,
    make_step,
    run_chunks,
)


@dataclasses.dataclass
class FitResult:
    """output: the net's output for the unperturbed input after the last step; output_avg: the
    moving average of the outputs (both (H, W, C) float32, clipped to [0, 1]). history: one dict
    per iteration. final: final metrics. compile_s / step_s: compile time and the median seconds
    per iteration after it. snapshots: {iteration: output} at ``save_every``. early_stop: with
    the detector on, {'iter': detected iteration, 'fired': bool, 'fired_at': iteration it fired
    (0 = not yet), 'output': the output at the detected iteration}, else None."""

    output: np.ndarray
    output_avg: np.ndarray
    history: list
    final: dict
    compile_s: float
    step_s: float
    preset: Preset
    seed: int
    problem: tasks.Problem
    snapshots: dict = dataclasses.field(default_factory=dict)
    state: object = None
    interrupted: bool = False
    early_stop: Optional[dict] = None


def default_image() -> np.ndarray:
    """The image that ships with the package (256x256 RGB), float32 in [0, 1]."""
    ref = importlib.resources.files("dipjax") / "data" / "astronaut.png"
    with importlib.resources.as_file(ref) as path:
        return io.load_image(path)


def build(problem: tasks.Problem, preset: Preset, seed: int):
    """(net, z, batch) for a problem. Raises InputError when the net cannot map z to the
    problem's output size (image too small for the generator's depth)."""
    key = jax.random.key(seed)
    if preset.input_kind == "image":
        if problem.net_image is None:
            raise InputError(f"preset {preset.name} feeds an image to the net; none was given")
        z = jax.numpy.asarray(problem.net_image[None])
    else:
        z = make_input(jax.random.fold_in(key, 1), preset.input_kind, preset.input_depth,
                       problem.out_hw, var=preset.input_var)
    net = net_with_io(preset.net, z.shape[-1], problem.channels, preset.init_style).build()
    out = _output_shape(net, z.shape)
    if out is None or tuple(out[1:3]) != tuple(problem.out_hw):
        h, w = problem.out_hw
        got = "fails" if out is None else f"gives {out[2]}x{out[1]}"
        raise InputError(f"image size {w}x{h}: preset {preset.name}'s generator {got} at this "
                         f"size; it needs sides that are multiples of "
                         f"{_minimum_side(net, z.shape[-1])} (at least that many pixels)")
    check_memory(net, z.shape, problem.out_hw, preset.name,
                 extra_bytes=early_stop_bytes(problem, preset))
    batch = {"z": z, "target": jax.numpy.asarray(problem.target[None])}
    if problem.mask is not None:
        batch["mask"] = jax.numpy.asarray(problem.mask[None])
    if problem.gt is not None:
        batch["gt"] = jax.numpy.asarray(problem.gt[None])
    return net, z, batch


def early_stop_bytes(problem: tasks.Problem, preset: Preset) -> int:
    """Device memory of the early-stopping detector: its window of outputs and the best one."""
    if preset.early_stop == "off":
        return 0
    return (preset.es_window + 1) * 4 * int(np.prod(problem.out_hw)) * problem.channels


def check_memory(net, z_shape, hw, preset_name: str, n_fits: int = 1,
                 extra_bytes: int = 0) -> None:
    """Refuse, with the largest size that would fit, a fit that cannot fit the device."""
    need = n_fits * (memory.estimate_bytes(net, z_shape) + extra_bytes)
    have = memory.device_bytes()
    if need > have:
        h, w = memory.largest_side(need, have, hw)
        raise InputError(f"image size {hw[1]}x{hw[0]}: preset {preset_name} needs about "
                         f"{need / 2**30:.1f} GiB, the device has {have / 2**30:.1f} GiB; "
                         f"downscale or crop to about {w}x{h} or smaller")


def _output_shape(net, z_shape):
    try:
        f = lambda x: net.init_with_output(jax.random.key(0), x)[0]
        return jax.eval_shape(f, jax.ShapeDtypeStruct(z_shape, jax.numpy.float32)).shape
    except (ValueError, TypeError, IndexError):
        return None


def _minimum_side(net, depth: int) -> int:
    """The smallest power-of-two square side the net maps onto itself."""
    for side in (2 ** k for k in range(1, 12)):
        out = _output_shape(net, (1, side, side, depth))
        if out is not None and tuple(out[1:3]) == (side, side):
            return side
    return 2048


def _boundaries(iters: int, chunk: int, every: tuple) -> list:
    """Sizes of the successive chunks so that every multiple of each ``every`` is a boundary."""
    marks = {iters}
    for e in every:
        if e:
            marks.update(range(e, iters, e))
    sizes, done = [], 0
    for m in sorted(marks):
        while done < m:
            n = min(chunk, m - done)
            sizes.append(n)
            done += n
    return sizes


def fit(problem: tasks.Problem, preset: Preset, *, seed: int = 0, chunk: int = 0,
        save_every: int = 0, checkpoint_every: int = 0, on_chunk: Optional[Callable] = None,
        on_checkpoint: Optional[Callable] = None, resume: Optional[tuple] = None,
        compiled: Optional[dict] = None) -> FitResult:
    """Run ``preset.iters`` steps on ``problem``.

    ``on_chunk(done, total, last_metrics)`` is called on the host after every chunk (progress
    bars); if it returns True the fit stops there and the result has ``interrupted=True``.
    ``on_checkpoint(state, history)`` is called at every multiple of ``checkpoint_every``.
    ``resume=(state, history)`` continues a checkpointed fit; with the same settings the result
    is bit-identical to an uninterrupted run (the chunks of steps are the same).
    ``compiled``: a cache of compiled chunks shared by fits of same-shaped problems with the same
    preset (``dipjax.batch``).
    """
    net, z, batch = build(problem, preset, seed)
    tx = make_optimizer(preset.lr)
    state = init_state(net, tx, jax.random.key(seed), z, _es_window(preset))
    history = []
    if resume is not None:
        state, history = resume
        history = list(history)
    step = preset_step(net, tx, problem, preset)
    chunk = max(1, min(chunk or default_chunk(), preset.iters))
    render = make_render(net)
    per_step, snapshots, timing, halted = [], {}, {}, False
    sizes = _boundaries(preset.iters, chunk, (save_every, checkpoint_every))
    for state, done, n, m, seconds in run_chunks(step, state, batch, sizes, skip=len(history),
                                                 timing=timing, compiled=compiled):
        per_step.append((seconds / n, n))
        for i in range(n):
            history.append({"iter": done - n + i + 1,
                            **{k: _scalar(v[i]) for k, v in m.items()}})
        if save_every and done % save_every == 0 and done < preset.iters:
            snapshots[done] = _clip(render(state.params, z)[0])
        if on_checkpoint and checkpoint_every and done % checkpoint_every == 0 \
                and done < preset.iters:
            on_checkpoint(state, history)
        if on_chunk and on_chunk(done, preset.iters, history[-1]):
            break
        if preset.early_stop == "halt" and bool(state.es["fired"]):
            halted = True
            break
    full = [s for s, n in per_step if n == chunk] or [s for s, _ in per_step] or [float("nan")]
    output = _clip(render(state.params, z)[0])
    output_avg = _clip(state.out_avg[0])
    es = early_stop_result(state.es)
    final = final_metrics(problem, output, output_avg, es)
    return FitResult(output, output_avg, history, final,
                     timing["compile_s"], statistics.median(full), preset, seed, problem,
                     snapshots, state,
                     interrupted=len(history) < preset.iters and not halted, early_stop=es)


def preset_step(net, tx, problem: tasks.Problem, preset: Preset):
    """The step function of ``problem`` with every setting taken from ``preset``."""
    return make_step(net, tx, problem.measure, loss=preset.loss,
                     reg_noise_std=preset.reg_noise_std, exp_weight=preset.exp_weight,
                     backtrack_every=preset.backtrack_every,
                     backtrack_drop_db=preset.backtrack_drop_db, tv_weight=preset.tv_weight,
                     es_patience=preset.es_patience)


def _es_window(preset: Preset) -> int:
    if preset.early_stop not in ("off", "mark", "halt"):
        raise InputError(f"--early-stop must be off, mark or halt, got {preset.early_stop!r}")
    if preset.early_stop != "off" and (preset.es_window < 2 or preset.es_patience < 1):
        raise InputError("--es-window must be >= 2 and --es-patience >= 1")
    return preset.es_window if preset.early_stop != "off" else 0


def early_stop_result(es: dict) -> Optional[dict]:
    """The detector's findings from a fit state's ``es`` (None when it was off)."""
    if not es:
        return None
    return {"iter": int(es["best_iter"]), "fired": bool(es["fired"]),
            "fired_at": int(es["fired_at"]), "wmv": float(es["best_var"]),
            "output": _clip(np.asarray(es["best_out"])[0])}


def initial_state(problem: tasks.Problem, preset: Preset, seed: int):
    """The state a fit starts from (a template for restoring checkpoints)."""
    net, z, _ = build(problem, preset, seed)
    return init_state(net, make_optimizer(preset.lr), jax.random.key(seed), z,
                      _es_window(preset))


def _scalar(v):
    v = np.asarray(v)
    return bool(v) if v.dtype == bool else float(v)


def _clip(x) -> np.ndarray:
    return np.clip(np.asarray(x, np.float32), 0.0, 1.0)


def final_metrics(problem: tasks.Problem, output, output_avg,
                  early_stop: Optional[dict] = None) -> dict:
    """PSNR/SSIM of the outputs (and of the early-stopping output) and of the baseline against
    the ground truth, when known."""
    out = {}
    if problem.gt is not None:
        if early_stop is not None and early_stop["iter"] > 0:
            out["psnr_gt_es"] = psnr_np(early_stop["output"], problem.gt)
        gt = problem.gt
        out["psnr_gt"] = psnr_np(output, gt)
        out["psnr_gt_avg"] = psnr_np(output_avg, gt)
        out["ssim"] = ssim(output, gt)
        out["ssim_avg"] = ssim(output_avg, gt)
        if problem.baseline is not None:
            out["psnr_baseline"] = psnr_np(problem.baseline, gt)
    return out


def prepare(task: str, preset: Preset, image: Optional[np.ndarray] = None, *,
            mask: Optional[np.ndarray] = None, gt: Optional[np.ndarray] = None,
            flash: Optional[np.ndarray] = None, kernel: Optional[np.ndarray] = None,
            degrade: bool = False, seed: int = 0) -> tasks.Problem:
    """Turn images (float32 (H, W, C) in [0, 1]) into a Problem using the preset's settings.
    With ``image=None`` the packaged image is used and degraded. ``kernel``: deblur's kernel
    image (else the preset's ``blur``)."""
    p = preset
    if image is None:
        image, degrade = default_image(), True
        if mask is None and p.mask_kind == "file":
            p = p.replace(mask_kind="text")
    rng = np.random.default_rng(seed)
    if task == "denoise":
        return tasks.prepare_denoise(image, gt=gt, degrade=degrade, noise=p.noise, sigma=p.sigma,
                                     density=p.density, quality=p.quality, crop=p.crop, rng=rng)
    if task == "superres":
        return tasks.prepare_superres(image, gt=gt, degrade=degrade, scale=p.scale,
                                      kernel=p.sr_kernel, crop=p.crop, rng=rng)
    if task in ("inpaint", "restore"):
        return tasks.prepare_masked(task, image, mask=mask, gt=gt, degrade=degrade,
                                    mask_kind=p.mask_kind if mask is None else "file",
                                    keep=p.keep, crop=p.crop, pad=p.pad, rng=rng)
    if task == "flash-no-flash":
        if flash is None:
            if not degrade:
                raise InputError("--task flash-no-flash needs --flash FILE (the flash photo)")
            image, flash, gt = synthetic_flash_pair(image, rng)
        return tasks.prepare_flash(image, flash, gt=gt, crop=p.crop)
    if task == "deblur":
        return tasks.prepare_deblur(image, kernel=tasks.blur_kernel(p.blur, kernel), gt=gt,
                                    degrade=degrade, sigma=p.sigma, crop=p.crop, rng=rng)
    raise InputError(f"--task must be one of {tasks.TASKS}, got {task!r}")


def synthetic_flash_pair(img: np.ndarray, rng: np.random.Generator):
    """A stand-in pair from one clean image: a dim, noisy, warm 'no-flash' shot and a bright,
    cold, sharp 'flash' shot. Returns (noflash, flash, clean)."""
    warm = np.array([1.0, 0.8, 0.6], np.float32)[: img.shape[-1]]
    noflash = np.clip(0.5 * img * warm + rng.normal(0, 0.06, img.shape), 0, 1)
    flash = np.clip(img ** 0.6 * np.array([0.85, 0.95, 1.0], np.float32)[: img.shape[-1]], 0, 1)
    return noflash.astype(np.float32), flash.astype(np.float32), (0.5 * img * warm)


def fit_image(task: str, image=None, *, preset: Optional[str] = None, mask=None, gt=None,
              flash=None, kernel=None, degrade: bool = False, seed: int = 0,
              iters: Optional[int] = None, lr: Optional[float] = None, chunk: int = 0,
              **overrides) -> FitResult:
    """Restore one image. ``image``/``mask``/``gt``/``flash``/``kernel``: arrays (H, W, C) in
    [0, 1] or paths. ``preset``: a name from ``dipjax.presets.PRESETS`` (default: the task's fast preset).
    Other keyword arguments override preset fields (e.g. ``reg_noise_std=0``)."""
    from dipjax.presets import FAST_DEFAULT

    p = get_preset(preset or FAST_DEFAULT[task], task).replace(iters=iters, lr=lr, **overrides)

    def load(x):
        if x is None or isinstance(x, np.ndarray):
            return x
        return io.load_image(x)

    problem = prepare(task, p, load(image), mask=load(mask), gt=load(gt), flash=load(flash),
                      kernel=load(kernel), degrade=degrade, seed=seed)
    return fit(problem, p, seed=seed, chunk=chunk)


def operator_problem(operator: Callable, measurement, shape, *, gt=None,
                     baseline=None) -> tasks.Problem:
    """A problem for any forward operator: the fit minimises loss(operator(x), measurement)
    over images x = net(z) of ``shape`` (H, W, C) in [0, 1].

    ``operator``: a jittable function from an image (H, W, C) to a measurement (any shape,
    linear or not); ``measurement``: that measurement, an array; ``gt`` (H, W, C) to score
    against; ``baseline`` (H, W, C): a trivial reconstruction, scored when ``gt`` is given."""
    h, w, c = (int(v) for v in shape)
    y = np.asarray(measurement, np.float32)
    want = jax.eval_shape(operator, jax.ShapeDtypeStruct((h, w, c), jax.numpy.float32))
    if tuple(want.shape) != y.shape:
        raise InputError(f"operator maps a {h}x{w}x{c} image to shape {tuple(want.shape)}, "
                         f"but the measurement has shape {y.shape}")
    return tasks.Problem("custom", tasks.Measure("custom", custom=operator), y, (h, w), gt=gt,
                         baseline=baseline, out_channels=c)


def fit_operator(operator: Callable, measurement, shape, *, preset: str = "denoise-fast",
                 gt=None, baseline=None, seed: int = 0, chunk: int = 0,
                 **overrides) -> FitResult:
    """Deep Image Prior for your own inverse problem (see ``operator_problem``), with the
    generator and optimiser of ``preset`` and any of its fields overridden by keyword."""
    p = get_preset(preset).replace(**overrides)
    problem = operator_problem(operator, measurement, shape, gt=gt, baseline=baseline)
    return fit(problem, p, seed=seed, chunk=chunk)
