"""Self-organizing maps in JAX and the internal-code analysis of network layers
(Lee & Vijayan, arXiv 2205.10952).

    from som import Grid, SOMSpec, fit, fit_many, bmus, quality, measures, codes

    spec = SOMSpec(Grid(10, 10, "hexagonal"), algorithm="batch", steps=40)
    w = fit(spec, key, x)                          # (M, d) codebook, jitted
    ws = fit_many(spec, keys, xs)                  # K maps at once (vmap): one per layer
    c = bmus(w, x)                                 # best-matching units, chunked matmul
    rc = winners(w, x, spec.grid)                  # as (row, col), MiniSom's winner
    win_map(w, x, spec.grid), labels_map(w, x, y, spec.grid), distance_map(w, spec.grid)
    quality.quantization_error(w, x), quality.topographic_error(w, x, spec.grid)
    quality.u_matrix(w, spec.grid), quality.hit_map(c, spec.grid)
    out = analyze(net, params, key, x_train, y_train, {"clean": x, "noise": sign_noise(k, x, 0.1)},
                  y, spec=spec, layers=("conv1", "fc1"), num_classes=10)

Modules: ``grid`` (lattices), ``neighborhood``, ``schedule`` (decays), ``bmu``, ``init``
(random / PCA), ``train`` (online scan, batch map), ``quality`` (errors, U-matrix, hits),
``codes`` (layer codes of a ``nets`` model, their scaling), ``measures`` (per-layer
measures), ``analysis`` (one map per layer of a network, clean and perturbed inputs),
``views`` (MiniSom-familiar winners, ``win_map``, ``labels_map``, ``distance_map``),
``checks`` (the input checks of ``fit``, ``bmus`` and the errors: empty, non-2-D or
non-finite data, a codebook of another dimension; ``check=False`` skips them).
"""

from som import analysis, codes, measures, quality
from som.analysis import analyze, layer_measures, sign_noise
from som.bmu import best_two, bmus
from som.codes import layer_codes, pad_stack, scale_codes
from som.grid import Grid
from som.train import SOMSpec, fit, fit_many, train
from som.views import distance_map, labels_map, win_map, winners

__all__ = ["Grid", "SOMSpec", "analysis", "analyze", "best_two", "bmus", "codes",
           "distance_map", "fit", "fit_many", "labels_map", "layer_codes", "layer_measures",
           "measures", "pad_stack", "quality", "scale_codes", "sign_noise", "train", "win_map",
           "winners"]
