"""The machine a figure was measured on: CPU model, its vector and matrix instruction sets, and
the float32 and bfloat16 matrix-product rates of XLA (and of PyTorch, when installed) here.

    python experiments/machine.py [--n 2048] [--repeats 7] [--no-torch]

Each rate is one n x n @ n x n product (bfloat16 inputs, float32 accumulation for XLA via
``preferred_element_type``; PyTorch's bfloat16 matmul), 2 n^3 flops over the median of
``repeats`` timed calls after a warm-up (fewer where a call is slow: about 5 s of calls at most;
bfloat16 without hardware support takes seconds to a minute a call), on the threads the process
is given. The other
benchmark scripts import ``describe`` and ``summary_line`` so that every table says where it was
taken.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

ISA = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name with its family and model numbers, e.g. 'AMD EPYC (family 25, model
    17)': virtual machines often report a bare name, shared by CPU generations whose speeds
    differ. From ``cpuinfo`` (the text of Linux's /proc/cpuinfo, read when None); else what
    ``platform`` knows."""
    from dipjax.ops.conv_choice import cpuinfo_fields  # imports jax: not in the bench's workers

    fields = cpuinfo_fields(cpuinfo)
    model = fields.get("model name") or platform.processor() or platform.machine()
    if fields.get("cpu family") and fields.get("model"):
        model += f" (family {fields['cpu family']}, model {fields['model']})"
    return model


def isa_features() -> list:
    """Which of ``ISA`` the CPU reports (Linux /proc/cpuinfo flags; empty elsewhere)."""
    from dipjax.ops.conv_choice import cpuinfo_fields

    flags = cpuinfo_fields().get("flags", "").split()
    return [x for x in ISA if x in flags]


def _rate(call, n: int, repeats: int, budget_s: float = 5.0) -> float:
    # Fewer repeats where one call is slow (bfloat16 without hardware support: seconds a call).
    t = time.perf_counter()
    call()
    first = time.perf_counter() - t
    times = [first] if first > budget_s else []
    for _ in range(min(repeats, int(budget_s / first))):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def xla_matmul_gflops(dtype: str = "float32", n: int = 2048, repeats: int = 7) -> float:
    """XLA's rate for one n x n product in ``dtype`` (bfloat16: float32 accumulation), GFLOP/s."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x: jnp.matmul(x, x, preferred_element_type=jnp.float32))
    return _rate(lambda: f(a).block_until_ready(), n, repeats)


def torch_matmul_gflops(dtype: str = "float32", n: int = 2048, repeats: int = 7):
    """PyTorch's rate for one n x n product in ``dtype``, GFLOP/s (None without torch)."""
    try:
        import torch
    except ImportError:
        return None
    a = torch.ones((n, n), dtype=getattr(torch, dtype))
    with torch.no_grad():
        return _rate(lambda: torch.matmul(a, a), n, repeats)


def describe(with_torch: bool = True, n: int = 2048, repeats: int = 7) -> dict:
    """The machine as a dict: model, ISA, CPUs and the matmul rates (GFLOP/s)."""
    import jax

    d = {
        "cpu": cpu_model(),
        "isa": isa_features(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "xla_f32_gflops": xla_matmul_gflops("float32", n, repeats),
        "xla_bf16_gflops": xla_matmul_gflops("bfloat16", n, repeats),
    }
    if with_torch:
        t32 = torch_matmul_gflops("float32", n, repeats)
        if t32 is not None:
            import torch

            d["torch"] = torch.__version__
            d["torch_threads"] = torch.get_num_threads()
            d["torch_f32_gflops"] = t32
            d["torch_bf16_gflops"] = torch_matmul_gflops("bfloat16", n, repeats)
    return d


def summary_line(d: dict) -> str:
    """One line for a table's caption."""
    g = lambda key: f"{d[key]:.0f}" if d[key] >= 10 else f"{d[key]:.2g}"
    rates = f"XLA matmul f32 {g('xla_f32_gflops')} / bf16 {g('xla_bf16_gflops')} GFLOP/s"
    if "torch_f32_gflops" in d:
        rates += (
            f", PyTorch {d['torch']} f32 {g('torch_f32_gflops')} / "
            f"bf16 {g('torch_bf16_gflops')} GFLOP/s"
        )
    isa = " ".join(d["isa"]) or "ISA unknown"
    return f"{d['cpu']}, {d['cpus']} CPUs ({isa}); jax {d['jax']} on {d['backend']}; {rates}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)
    d = describe(not args.no_torch, args.n, args.repeats)
    print(json.dumps(d))
    print(summary_line(d))


if __name__ == "__main__":
    main()
