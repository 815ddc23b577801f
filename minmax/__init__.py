"""Min-Max property of conv weights, fuzziness and the Min-Max loss (seed 000).

Shen, Chen & Wang, *A Study on the Uncertainty of Convolutional Layers in Deep Neural
Networks* (arXiv 2011.13719). Only the paper's abstract is available, so the statistics
and the loss here are this project's own formulation (see ``../shared/DESIGN.md``):

* :mod:`minmax.stats`: interval statistics of conv kernels (center distance, Min-Max
  index, near-the-ends fraction, membership, De Luca–Termini fuzziness; the sparsity
  view) at ``kernel`` / ``filter`` / ``layer`` granularity, pure and jittable;
* :mod:`minmax.regularizer`: ``CE + lambda * F`` as a ``regularizer(params)`` for
  :func:`nets.train.fit`, and a per-epoch ``on_epoch`` tracker of the statistics;
* :mod:`minmax.study`: the ``minmax`` task (``configs/minmax.py``).
"""

from minmax.regularizer import fuzziness_penalty, tracker
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
    "fuzziness",
    "fuzziness_penalty",
    "kernel_stats",
    "layer_stats",
    "membership",
    "per_interval",
    "tracker",
]
