"""The command line's progress bar."""

import time
from types import SimpleNamespace

from dipjax.progress import ProgressBar


def _progress(done: int, new: int, batch: int = 1) -> SimpleNamespace:
    rows = [{"loss": 0.1, "psnr_fit": 20.0}] * new
    return SimpleNamespace(batch=batch, batches=2, done=done, rows={(0, 0): rows}, last=rows[-1])


def test_a_resumed_run_counts_its_earlier_iterations_but_rates_only_its_own():
    bar = ProgressBar(1000)
    try:
        bar.update(_progress(done=505, new=5))  # resumed at 500
        time.sleep(0.05)
        bar.update(_progress(done=510, new=5))
        d = bar.bar.format_dict
        assert (d["n"], d["initial"], d["total"]) == (510, 500, 1000)
        assert 0 < (d["n"] - d["initial"]) / d["elapsed"] < 10 / 0.05  # 10 iterations rated
        bar.update(_progress(done=3, new=3, batch=2))  # the next batch starts from 0
        assert (bar.bar.n, bar.bar.initial) == (3, 0)
    finally:
        bar.close()
