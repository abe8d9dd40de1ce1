"""dipjax: Deep Image Prior in JAX."""
from dipjax.nets import ResNet, UNet, count_params, dcgan, get_net, get_texture_nets, skip
from dipjax.api import fit, fit_image, fit_operator, operator_problem, prepare

__version__ = "0.1.0"
__all__ = ["ResNet", "UNet", "count_params", "dcgan", "fit", "fit_image", "fit_operator",
           "get_net", "get_texture_nets", "operator_problem", "prepare", "skip"]
