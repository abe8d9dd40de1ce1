"""The paper's super-resolution score: luma PSNR with the evaluation script's border."""

import math

import numpy as np
import pytest

from dipjax.metrics import psnr_sr


def test_psnr_sr_closed_form_for_a_grey_offset():
    # Adding d to R, G and B adds 219/255 * d to the studio-range luma (the weights sum to 1).
    gt = np.full((40, 30, 3), 0.5)
    d = 0.01
    assert psnr_sr(gt + d, gt) == pytest.approx(-20 * math.log10(219 / 255 * d), abs=1e-9)


def test_psnr_sr_ignores_colour_that_keeps_the_luma():
    gt = np.full((20, 20, 3), 0.5)
    out = gt.copy()
    # A change along a direction orthogonal to the luma weights (0.299, 0.587, 0.114).
    out[..., 0] += 0.587 * 0.01
    out[..., 1] -= 0.299 * 0.01
    assert psnr_sr(out, gt) > 100 or math.isinf(psnr_sr(out, gt))


@pytest.mark.parametrize("row, counted", [(3, False), (4, True), (34, True), (35, False)])
def test_psnr_sr_border_is_4_at_the_start_and_5_at_the_end(row, counted):
    gt = np.full((40, 40, 3), 0.5)
    out = gt.copy()
    out[row, 20] += 0.1
    assert math.isinf(psnr_sr(out, gt)) != counted
    out = gt.copy()
    out[20, row] += 0.1
    assert math.isinf(psnr_sr(out, gt)) != counted


def test_ssim_of_two_flat_images_is_the_luminance_term():
    from dipjax.metrics import ssim

    # flat images: no variance, so only the mean term remains; dark, so that C1 weighs in
    c1, a, b = 0.01**2, 0.01, 0.02
    want = (2 * a * b + c1) / (a * a + b * b + c1)
    got = ssim(np.full((24, 24, 3), a, np.float32), np.full((24, 24, 3), b, np.float32))
    assert got == pytest.approx(want, rel=1e-4)
    noisy = np.random.default_rng(0).random((24, 24, 3)).astype(np.float32)
    assert ssim(noisy, noisy) == pytest.approx(1.0, abs=1e-6)
