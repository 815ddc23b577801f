"""Analytic Gaussian moments of LeNet-5 on digits vs Monte Carlo, and their uses.

Compares the closed-form output moments (exact, zero_mean, diagonal) with 10^4-sample
Monte Carlo through the real network over a noise grid, and runs the uses and the
Gaussian attacks. Sized for a few minutes on a 2-core CPU (25 images); the full protocol
is ``--config.analytic.num_images=100``. Other models: ``--config.model.name=lenet_bibi``
(1,024 hidden units at the split: slower; lower ``analytic.image_chunk`` if memory is short).
"""

import ml_collections


def get_config():
    return ml_collections.ConfigDict({"task": "analytic", "analytic": {"num_images": 25}})
