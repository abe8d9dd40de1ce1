"""The reference notebooks' recipes as frozen dataclasses, and a ``fast`` variant per task.

Every field is a hyperparameter the CLI can override; ``summary.json`` records the resolved one.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Optional

from dipjax.early_stop import MODES as EARLY_STOP_MODES
from dipjax.io import InputError
from dipjax.nets.layers import INIT_STYLES
from dipjax.netspec import _CONSTRUCTORS, RECIPE_NETS, NetSpec
from dipjax.ops.conv import PRECISIONS
from dipjax.ops.downsampler import NAMED_KERNELS as SR_KERNELS


class ParameterError(InputError):
    """A preset field with a value it cannot take. ``name`` is the field (the CLI maps it onto
    its flag), ``value`` the value, ``why`` the rule it breaks."""

    def __init__(self, name: str, value, why: str):
        self.name, self.value, self.why = name, value, why
        super().__init__(f"{name}={value!r}: {why}")


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


# Far above the longest recipe's 11000 iterations; a run's chunk schedule is a list this long
# (an unbounded value made it exhaust the memory).
MAX_ITERS = 1_000_000
# (field, rule, message): every numeric and enumerated field a user can set.
_RULES = (
    (
        "iters",
        lambda v: isinstance(v, int) and 0 < v <= MAX_ITERS,
        f"must be an integer in 1..{MAX_ITERS}",
    ),
    ("lr", lambda v: _finite(v) and 0 < v <= 10, "must be a finite number in (0, 10]"),
    ("reg_noise_std", lambda v: _finite(v) and v >= 0, "must be a finite number >= 0"),
    ("exp_weight", lambda v: _finite(v) and 0 <= v < 1, "must be in [0, 1)"),
    ("backtrack_every", lambda v: isinstance(v, int) and v >= 0, "must be an integer >= 0"),
    ("backtrack_drop_db", lambda v: _finite(v) and v > 0, "must be a finite number > 0"),
    ("crop", lambda v: isinstance(v, int) and v >= 0, "must be an integer >= 0 (0 = none)"),
    ("pad", lambda v: isinstance(v, int) and v >= 0, "must be an integer >= 0"),
    ("sr_kernel", lambda v: v in SR_KERNELS, "must be " + ", ".join(SR_KERNELS)),
    ("input_depth", lambda v: isinstance(v, int) and v > 0, "must be an integer > 0"),
    ("input_var", lambda v: _finite(v) and v >= 0, "must be a finite number >= 0"),
    ("sigma", lambda v: _finite(v) and 0 <= v <= 255, "must be in [0, 255]"),
    ("density", lambda v: _finite(v) and 0 <= v <= 1, "must be in [0, 1]"),
    ("quality", lambda v: isinstance(v, int) and 1 <= v <= 95, "must be an integer in 1..95"),
    ("keep", lambda v: _finite(v) and 0 < v <= 1, "must be in (0, 1]"),
    ("scale", lambda v: v in (2, 4, 8), "must be 2, 4 or 8"),
    ("tv_weight", lambda v: _finite(v) and v >= 0, "must be a finite number >= 0"),
    ("loss", lambda v: v in ("mse", "l1"), "must be mse or l1"),
    (
        "input_kind",
        lambda v: v in ("noise", "meshgrid", "image"),
        "must be noise, meshgrid or image",
    ),
    ("noise", lambda v: v in ("gauss", "saltpepper", "jpeg"), "must be gauss, saltpepper or jpeg"),
    (
        "mask_kind",
        lambda v: v in ("file", "text", "random", "rect"),
        "must be file, text, random or rect",
    ),
    ("init_style", lambda v: v in INIT_STYLES, "must be " + " or ".join(INIT_STYLES)),
    ("early_stop", lambda v: v in EARLY_STOP_MODES, "must be " + ", ".join(EARLY_STOP_MODES)),
    ("es_window", lambda v: isinstance(v, int) and v >= 2, "must be an integer >= 2"),
    ("es_patience", lambda v: isinstance(v, int) and v >= 1, "must be an integer >= 1"),
    ("sgld", lambda v: _finite(v) and v >= 0, "must be a finite number >= 0 (0 = off)"),
    (
        "sgld_burn_in",
        lambda v: v is None or (isinstance(v, int) and v >= 0),
        "must be an integer >= 0",
    ),
    ("weight_decay", lambda v: _finite(v) and v >= 0, "must be a finite number >= 0"),
    ("demo_side", lambda v: isinstance(v, int) and 0 <= v <= 256, "must be an integer 0-256"),
    ("precision", lambda v: v in PRECISIONS, "must be " + " or ".join(PRECISIONS)),
)


@dataclasses.dataclass(frozen=True)
class Preset:
    """One fit's recipe.

    net: the generator (its input/output channels are set from the data at fit time).
    input_kind: 'noise' | 'meshgrid' | 'image' (flash-no-flash: the flash image itself).
    exp_weight: weight of the output moving average (the reference's ``exp_weight``).
    backtrack_every: 0 = off; else every this many steps compare the fit's PSNR with the last
    check and, if it fell by more than ``backtrack_drop_db``, return to the saved parameters.
    crop: centre-crop to a multiple of this (0 = none); pad: reflection pad first (barbara).
    blur: the deblurring kernel, 'gauss:SIGMA' (pixels). tv_weight: weight of the output's total
    variation added to the loss (0 = off). early_stop: 'off' | 'mark' | 'halt', the ES-WMV
    detector (``dipjax.early_stop``) with its window and patience in iterations.
    sgld: 0 = off; else the SGLD noise scale (``dipjax.step.make_step``), and the outputs after
    ``burn_in`` iterations are posterior samples. sgld_burn_in: None = half of ``iters``.
    weight_decay: L2 weight prior added to the gradient (torch's Adam ``weight_decay``).
    demo_side: run without an image, fit this top-centre square of the packaged image
    (0 = all of it, 256x256); the CPU super-resolution demo uses the face (128).
    precision: the generator's convolutions in 'f32' or 'bf16' (bfloat16 products with float32
    accumulation; parameters, optimizer and BatchNorm stay float32; ``dipjax.ops.conv``).
    """

    name: str
    task: str
    net: NetSpec
    input_kind: str = "noise"
    input_depth: int = 32
    input_var: float = 0.1
    lr: float = 0.01
    iters: int = 3000
    reg_noise_std: float = 1.0 / 30.0
    exp_weight: float = 0.99
    backtrack_every: int = 0
    backtrack_drop_db: float = 5.0
    loss: str = "mse"
    crop: int = 32
    pad: int = 0
    scale: int = 4
    sr_kernel: str = "lanczos2"
    noise: str = "gauss"
    sigma: float = 25.0
    density: float = 0.1
    quality: int = 10
    mask_kind: str = "file"
    keep: float = 0.5
    init_style: str = "legacy"
    blur: str = "gauss:2"
    tv_weight: float = 0.0
    early_stop: str = "off"
    es_window: int = 100
    es_patience: int = 500
    sgld: float = 0.0
    sgld_burn_in: Optional[int] = None
    weight_decay: float = 0.0
    demo_side: int = 0
    precision: str = "f32"

    def __post_init__(self):
        for name, ok, why in _RULES:
            value = getattr(self, name)
            if not ok(value):
                raise ParameterError(name, value, why)
        if self.sgld_burn_in is not None and not self.sgld:
            raise ParameterError("sgld_burn_in", self.sgld_burn_in, "applies only with sgld > 0")
        if self.sgld and self.burn_in >= self.iters:
            raise ParameterError(
                "sgld_burn_in", self.sgld_burn_in, f"must be below the iterations ({self.iters})"
            )
        if self.sgld and self.early_stop == "halt":
            raise ParameterError(
                "early_stop", "halt", "would end an SGLD run before its samples; use mark"
            )
        from dipjax.ops.blur import parse_blur

        try:
            parse_blur(self.blur)
        except ValueError as e:
            raise ParameterError("blur", self.blur, str(e)) from None

    @property
    def burn_in(self) -> int:
        """Iterations before SGLD samples are kept."""
        return self.iters // 2 if self.sgld_burn_in is None else self.sgld_burn_in

    def replace(self, **changes) -> "Preset":
        """A copy with ``changes``; None leaves a field as it is, except for fields whose
        default is None (``sgld_burn_in``), which None sets back."""
        return dataclasses.replace(
            self, **{k: v for k, v in changes.items() if v is not None or k in _NONE_DEFAULT}
        )


_IO_NAMES = {
    "get_net": ("input_depth", "n_channels"),
    "skip": ("num_input_channels", "num_output_channels"),
    "UNet": ("num_input_channels", "num_output_channels"),
    "ResNet": ("num_input_channels", "num_output_channels"),
    "texture_nets": ("inp", None),
    "dcgan": ("inp", None),
    "deep_decoder": ("num_input_channels", "num_output_channels"),
}


def net_with_io(spec: NetSpec, in_channels: int, out_channels: int, init_style: str) -> NetSpec:
    """The same generator with the given input/output channel counts and initialisation."""
    fn = _CONSTRUCTORS[spec.constructor]
    target = fn.__init__ if inspect.isclass(fn) else fn
    bound = inspect.signature(target).bind_partial(
        *((None,) if inspect.isclass(fn) else ()), *spec.args, **dict(spec.kwargs)
    )
    kwargs = {k: v for k, v in bound.arguments.items() if k != "self"}
    in_name, out_name = _IO_NAMES[spec.constructor]
    kwargs[in_name] = in_channels
    if out_name:
        kwargs[out_name] = out_channels
    kwargs["init_style"] = init_style
    return NetSpec.of(spec.constructor, **kwargs)


def _fast_skip(ch: int, scales: int, skip: int, up="bilinear", depth: int = 8) -> NetSpec:
    return NetSpec.of(
        "skip",
        depth,
        3,
        num_channels_down=[ch] * scales,
        num_channels_up=[ch] * scales,
        num_channels_skip=[skip] * scales,
        upsample_mode=up,
        need_sigmoid=True,
        need_bias=True,
        pad="reflection",
        act_fun="LeakyReLU",
    )


def _deep_decoder(k: int) -> NetSpec:
    return NetSpec.of("deep_decoder", k, 3, channels=k, layers=6)


# Langevin noise scale (x the learning rate) that ``--sgld`` alone uses: the best of 0.5, 2 and 8
# on 64 px crops of F16 and peppers (README, Bayesian DIP).
SGLD_NOISE = 0.5

_R = RECIPE_NETS
PRESETS = {
    p.name: p
    for p in [
        Preset("denoise", "denoise", _R["denoising_F16"], iters=3000, backtrack_every=1),
        Preset(
            "denoise-jpeg",
            "denoise",
            _R["denoising_snail_jpeg"],
            input_depth=3,
            iters=2400,
            backtrack_every=1,
            noise="jpeg",
        ),
        Preset("superres-x4", "superres", _R["sr_x4"], iters=2000, reg_noise_std=0.03, scale=4),
        Preset("superres-x8", "superres", _R["sr_x8"], iters=4000, reg_noise_std=0.05, scale=8),
        Preset(
            "inpaint-vase",
            "inpaint",
            _R["inpaint_vase"],
            input_kind="meshgrid",
            input_depth=2,
            iters=5001,
            reg_noise_std=0.03,
            crop=64,
        ),
        Preset(
            "inpaint-kate", "inpaint", _R["inpaint_kate"], iters=6001, reg_noise_std=0.03, crop=64
        ),
        Preset(
            "inpaint-library",
            "inpaint",
            _R["inpaint_library_skip_depth6"],
            input_depth=1,
            iters=3001,
            reg_noise_std=0.0,
            crop=64,
        ),
        Preset(
            "restore-barbara",
            "restore",
            _R["restoration_barbara"],
            lr=0.001,
            iters=11000,
            reg_noise_std=0.03,
            backtrack_every=50,
            crop=0,
            pad=1,
            mask_kind="random",
            keep=0.5,
        ),
        Preset(
            "restore-kate",
            "restore",
            _R["restoration_kate"],
            iters=1000,
            reg_noise_std=0.0,
            backtrack_every=50,
            crop=0,
            mask_kind="random",
            keep=0.02,
        ),
        Preset(
            "flash-no-flash",
            "flash-no-flash",
            _R["flash_no_flash"],
            input_kind="image",
            input_depth=3,
            lr=0.1,
            iters=601,
            reg_noise_std=0.0,
        ),
        # Not in the paper: deblurring with the denoising generator, light noise on the blurred
        # image.
        Preset("deblur", "deblur", _R["denoising_F16"], iters=3000, reg_noise_std=0.03, sigma=2.0),
        # CPU presets: a 4-scale, 32-channel skip net; measured against the baseline in README.
        Preset(
            "denoise-fast",
            "denoise",
            _fast_skip(32, 4, 4),
            input_depth=8,
            iters=1500,
            backtrack_every=1,
        ),
        Preset(
            "superres-fast",
            "superres",
            _fast_skip(32, 4, 4),
            input_depth=8,
            iters=1000,
            reg_noise_std=0.03,
            scale=4,
            # The CPU quick start (docs/speed.md): the whole 256x256 image took 6.5 min here at
            # 265 ms per step (memory-bound: 16 channels gave 206 ms and less gain); the face at
            # 128x128 runs 93 ms per step; 1000 iterations end 0.9 dB above bicubic (1200: 1.0)
            # and leave a margin under 4 minutes on a 2-core machine of 110 GFLOP/s (this: 170).
            demo_side=128,
        ),
        Preset(
            "inpaint-fast",
            "inpaint",
            _fast_skip(32, 4, 4, "nearest"),
            input_depth=8,
            iters=600,
            reg_noise_std=0.03,
            crop=16,
            mask_kind="text",
        ),
        Preset(
            "restore-fast",
            "restore",
            _fast_skip(32, 4, 4),
            input_depth=8,
            iters=600,
            reg_noise_std=0.03,
            backtrack_every=50,
            crop=16,
            mask_kind="random",
            keep=0.5,
        ),
        Preset(
            "flash-no-flash-fast",
            "flash-no-flash",
            _fast_skip(32, 4, 4, "bilinear", 3),
            input_kind="image",
            input_depth=3,
            lr=0.01,
            iters=300,
            reg_noise_std=0.0,
        ),
        Preset(
            "deblur-fast",
            "deblur",
            _fast_skip(32, 4, 4),
            input_depth=8,
            iters=1000,
            reg_noise_std=0.03,
            sigma=2.0,
        ),
    ]
}

for k, suffix, iters in ((128, "", 3000), (64, "-fast", 1500)):
    # The Deep Decoder (Heckel and Hand): its fixed input is a k-channel U[0, 0.1) grid 32x
    # smaller than the image; no input perturbation, no early stopping needed.
    for task, kw in (("denoise", {}), ("inpaint", {"mask_kind": "text"} if suffix else {})):
        PRESETS[f"{task}-dd{suffix}"] = Preset(
            f"{task}-dd{suffix}",
            task,
            _deep_decoder(k),
            input_depth=k,
            iters=iters,
            reg_noise_std=0.0,
            **kw,
        )

# The preset each task runs by default: the paper's recipe on an accelerator, fast on a CPU.
PAPER_DEFAULT = {
    "denoise": "denoise",
    "superres": "superres-x4",
    "inpaint": "inpaint-kate",
    "restore": "restore-kate",
    "flash-no-flash": "flash-no-flash",
    "deblur": "deblur",
}
FAST_DEFAULT = {
    "denoise": "denoise-fast",
    "superres": "superres-fast",
    "inpaint": "inpaint-fast",
    "restore": "restore-fast",
    "flash-no-flash": "flash-no-flash-fast",
    "deblur": "deblur-fast",
}


def get_preset(name: str, task: Optional[str] = None) -> Preset:
    """The preset called ``name``; with ``task``, refuse one made for another task."""
    if name not in PRESETS:
        raise ParameterError("preset", name, "unknown; one of " + ", ".join(sorted(PRESETS)))
    p = PRESETS[name]
    if task is not None:
        check_task(p, task)
    return p


def check_task(p: Preset, task: str) -> None:
    """Refuse the preset ``p`` for another task than its own (``ParameterError``)."""
    if p.task != task:
        raise ParameterError("preset", p.name, f"is for task {p.task}, not {task}")


_NONE_DEFAULT = {f.name for f in dataclasses.fields(Preset) if f.default is None}
