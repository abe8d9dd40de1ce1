"""dipjax: Deep Image Prior in JAX.

``dipjax.fit`` is the command-line module (``python -m dipjax.fit``); the functions are
``fit_image`` (one image, by task), ``fit_problem`` (one prepared problem), ``run`` (many
problems and seeds) and ``fit_operator`` (your own forward operator). Names and submodules
(``dipjax.ensemble``, ...) are imported on first use, so that the command line's ``--help`` and
input errors answer without loading JAX.
"""

import importlib

__version__ = "0.1.0"
_EXPORTS = {
    **dict.fromkeys(
        ["ResNet", "UNet", "count_params", "dcgan", "get_net", "get_texture_nets", "skip"],
        "dipjax.nets",
    ),
    **dict.fromkeys(
        [
            "FitResult",
            "RunResult",
            "default_image",
            "fit_image",
            "fit_operator",
            "fit_problem",
            "operator_problem",
            "prepare",
            "run",
        ],
        "dipjax.api",
    ),
}
__all__ = sorted(_EXPORTS)
# The library's modules a user reaches from `import dipjax` alone (not the command-line modules).
_SUBMODULES = (
    "api",
    "build",
    "checkpoint",
    "degrade",
    "early_stop",
    "engine",
    "ensemble",
    "host_memory",
    "io",
    "metrics",
    "nets",
    "ops",
    "presets",
    "results",
    "step",
    "tasks",
    "threefry",
    "torch_weights",
)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:  # as after `import dipjax.<name>` (dipjax.ensemble.ensemble_stats)
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'dipjax' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
