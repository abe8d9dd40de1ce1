"""Array operations used by the tasks: the super-resolution downsampler."""
from dipjax.ops.downsampler import Downsampler, downsampler_kernel, lanczos_kernel_1d

__all__ = ["Downsampler", "downsampler_kernel", "lanczos_kernel_1d"]
