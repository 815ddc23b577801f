"""XLA:CPU compile options for the hot loops (train steps, attack iterations).

YNNPACK, jaxlib >= 0.10's default CPU library for dots, reductions and some convolutions,
is slower than XLA's own kernels on these small shapes: on 2 cores the LeNet-5 train step
(batch 128) measured ~25% faster and PGD-40 on LeNet-5 ~12% faster without it
(benchmarks/train_bench.py, benchmarks/attacks_bench.py). Other backends get no options.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax

CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def compiler_options() -> dict[str, str] | None:
    """``CPU_OPTIONS`` on a CPU backend whose XLA knows them, else ``None``. Call it when
    compiling, not at import: it starts the backend (jax.distributed must come first)."""
    if jax.default_backend() != "cpu":
        return None
    try:
        jax.jit(lambda x: x + 1, compiler_options=CPU_OPTIONS).lower(1.0).compile()
    except jax.errors.JaxRuntimeError:  # "No such compile option": an XLA without it
        return None
    return CPU_OPTIONS


def is_cpu() -> bool:
    return jax.default_backend() == "cpu"


def jit(fun: Callable, **jit_kwargs) -> Callable:
    """``jax.jit(fun, **jit_kwargs)`` compiled with :func:`compiler_options`, which are
    looked up on the first call (so importing a module starts no backend). Called inside
    another jit (traced arguments) it is a plain nested jit: only a top-level jit takes
    options. The top-level jitted function is ``.compiled()`` (e.g. for ``._cache_size()``)."""

    @functools.cache
    def compiled():
        return jax.jit(fun, compiler_options=compiler_options(), **jit_kwargs)

    nested = jax.jit(fun, **jit_kwargs)

    @functools.wraps(fun)
    def call(*args, **kwargs):
        traced = any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves((args, kwargs)))
        return (nested if traced else compiled())(*args, **kwargs)

    call.compiled = compiled
    return call
