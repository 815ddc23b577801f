"""Self-organizing maps in JAX and the internal-code analysis of network layers (seed 001,
Lee & Vijayan, arXiv 2205.10952).

    from som import Grid, SOMSpec, fit, fit_many, bmus, quality, measures, codes

    spec = SOMSpec(Grid(10, 10, "hexagonal"), algorithm="batch", steps=40)
    w = fit(spec, key, x)                          # (M, d) codebook, jitted
    ws = fit_many(spec, keys, xs)                  # K maps at once (vmap): one per layer
    c = bmus(w, x)                                 # best-matching units, chunked matmul
    quality.quantization_error(w, x), quality.topographic_error(w, x, spec.grid)
    quality.u_matrix(w, spec.grid), quality.hit_map(c, spec.grid)

Modules: ``grid`` (lattices), ``neighborhood``, ``schedule`` (decays), ``bmu``, ``init``
(random / PCA), ``train`` (online scan, batch map), ``quality`` (errors, U-matrix, hits),
``codes`` (layer codes of a ``nets`` model), ``measures`` (per-layer measures),
``plots`` and ``study`` (the ``som`` task of scripts/run.py).
"""

from som.bmu import best_two, bmus
from som.grid import Grid
from som.train import SOMSpec, fit, fit_many, train

__all__ = ["Grid", "SOMSpec", "best_two", "bmus", "fit", "fit_many", "train"]
