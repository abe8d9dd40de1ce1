import os
import tempfile

import numpy as np
import pytest

# One compile cache for this process and the CLI subprocesses alike (the user's, as dipjax's
# command line uses it, unless DIPJAX_COMPILE_CACHE names another): a step compiled once is
# not compiled again by the next test or the next test session. Tests that time compilation
# name their own empty cache.
from dipjax import compile_cache  # noqa: E402

os.environ.setdefault(
    "DIPJAX_COMPILE_CACHE", str(compile_cache.default_dir() or tempfile.mkdtemp(prefix="dipjax-"))
)
if os.environ["DIPJAX_COMPILE_CACHE"].lower() not in ("", "off", "0", "no"):
    compile_cache.enable(os.environ["DIPJAX_COMPILE_CACHE"])

from dipjax.netspec import NetSpec
from dipjax.ops import conv_choice
from dipjax.presets import Preset


@pytest.fixture(autouse=True)
def _conv_choices_file_not_inherited():
    """The command line points ``conv_choice`` at its compile cache's file; a test that runs it
    in this process must not leave that to the tests after it (they would measure layers)."""
    yield
    conv_choice.use_file(None)


def smooth_image(h=32, w=32, c=3, seed=0):
    """A smooth test picture in [0.1, 0.9]: low-frequency waves and one soft disc."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    chans = []
    for k in range(c):
        a, b = rng.uniform(1, 3, 2)
        v = 0.5 + 0.25 * np.sin(2 * np.pi * a * x + k) * np.cos(2 * np.pi * b * y)
        v += 0.15 * (((x - 0.5) ** 2 + (y - 0.5) ** 2) < 0.06)
        chans.append(v)
    return np.clip(np.stack(chans, -1), 0.1, 0.9).astype(np.float32)


TINY_NET = NetSpec.of(
    "skip",
    4,
    3,
    num_channels_down=[16, 16, 16],
    num_channels_up=[16, 16, 16],
    num_channels_skip=[4, 4, 4],
    upsample_mode="bilinear",
    pad="reflection",
)


def tiny_preset(task, **kw):
    base = dict(name=f"tiny-{task}", task=task, net=TINY_NET, input_depth=4, iters=20, crop=8)
    base.update(kw)
    return Preset(**base)


@pytest.fixture
def image():
    return smooth_image()


# Preset fields that swap a named preset's generator for the tiny one (fit_operator's **overrides).
TINY_OVERRIDES = dict(net=TINY_NET, input_depth=4, reg_noise_std=0.0)
