"""dipjax: Deep Image Prior in JAX."""
from dipjax.nets import UNet, ResNet, count_params, dcgan, get_net, get_texture_nets, skip

__version__ = "0.1.0"
__all__ = ["ResNet", "UNet", "count_params", "dcgan", "get_net", "get_texture_nets", "skip"]
