"""Min-Max property of conv weights, fuzziness and the Min-Max loss (seed 000).

Shen, Chen & Wang, *A Study on the Uncertainty of Convolutional Layers in Deep Neural
Networks* (arXiv 2011.13719). Only the paper's abstract is available, so the statistics
and the loss here are this project's own formulation (see ``../shared/DESIGN.md``):

* :mod:`minmax.stats`: interval statistics of conv kernels (center distance, Min-Max
  index, near-the-ends fraction, membership, De Luca–Termini fuzziness; the sparsity
  view) at ``kernel`` / ``filter`` / ``layer`` granularity, pure and jittable;
* :mod:`minmax.regularizer`: ``CE + lambda * F`` as a ``regularizer(params)`` for
  :func:`nets.train.fit`, the statistics of S stacked models in one jitted call
  (:func:`stacked_stats`), and a per-epoch ``on_epoch`` tracker of them.

The experiment that trains a lambda x seed grid with this loss and tests the paper's
claims is the ``minmax`` lens (``experiments/minmax/``, ``configs/minmax.py``).
"""

from minmax.regularizer import flatten, fuzziness_penalty, stacked_stats, tracker
from minmax.stats import (
    GRANULARITIES,
    center_distance,
    fuzziness,
    kernel_stats,
    layer_stats,
    membership,
    per_interval,
)

__all__ = [
    "GRANULARITIES",
    "center_distance",
    "flatten",
    "fuzziness",
    "fuzziness_penalty",
    "kernel_stats",
    "layer_stats",
    "membership",
    "per_interval",
    "stacked_stats",
    "tracker",
]
