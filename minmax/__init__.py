"""Min-Max property of conv weights, fuzziness and the Min-Max loss (seed 000).

Shen, Chen & Wang, *A Study on the Uncertainty of Convolutional Layers in Deep Neural
Networks* (arXiv 2011.13719). Only the paper's abstract is available, so the statistics
and the loss here are this project's own formulation (see ``../shared/DESIGN.md``):

* :mod:`minmax.stats`: interval statistics of conv kernels (center distance, Min-Max
  index, near-the-ends fraction, membership, De Luca–Termini fuzziness; the sparsity
  view) at ``kernel`` / ``filter`` / ``layer`` granularity, pure and jittable;
* :mod:`minmax.regularizer`: ``CE + lambda * F`` as a ``regularizer(params)`` for
  :func:`nets.train.fit`, the statistics of S stacked models in one jitted call
  (:func:`stacked_stats`), and a per-epoch ``on_epoch`` tracker of them;
* readings of "interval" (:mod:`minmax.readings`, ``READINGS``): ``group`` (the above),
  ``trajectory`` (:mod:`minmax.trajectory`: each weight's running range over training,
  tracked in the train step by :class:`TrajectoryTracker`, against a random walk of the
  same step sizes) and ``init`` (:mod:`minmax.init_support`: the initializer's support
  ``+-b``), each with its statistics and its penalty.

The experiment that trains a lambda x seed grid with this loss and tests the paper's
claims is the ``minmax`` lens (``experiments/minmax/``, ``configs/minmax.py``).
"""

from minmax.init_support import init_penalty, init_stats, support_bound
from minmax.readings import (
    READINGS,
    penalties,
    reading_stats,
    readings_tracker,
    step_tracker,
)
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
from minmax.trajectory import TrajectoryTracker, trajectory_penalty, trajectory_stats

__all__ = [
    "GRANULARITIES",
    "READINGS",
    "TrajectoryTracker",
    "center_distance",
    "flatten",
    "fuzziness",
    "fuzziness_penalty",
    "init_penalty",
    "init_stats",
    "kernel_stats",
    "layer_stats",
    "membership",
    "penalties",
    "per_interval",
    "reading_stats",
    "readings_tracker",
    "stacked_stats",
    "step_tracker",
    "support_bound",
    "tracker",
    "trajectory_penalty",
    "trajectory_stats",
]
