"""Array operations used by the tasks: the super-resolution downsampler and the blur."""

from dipjax.ops.blur import blur, gaussian_kernel, parse_blur
from dipjax.ops.downsampler import Downsampler, downsampler_kernel, lanczos_kernel_1d

__all__ = [
    "Downsampler",
    "blur",
    "downsampler_kernel",
    "gaussian_kernel",
    "lanczos_kernel_1d",
    "parse_blur",
]
