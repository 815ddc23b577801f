"""Analytic Gaussian moments of LeNet-5 on digits vs Monte Carlo, and their uses.

Trains LeNet-5 (or restores it from the run folder's checkpoints), then compares the
closed-form output moments (exact, zero_mean, diagonal) with 10^4-sample Monte Carlo
through the real network over a noise grid, and runs the uses and the Gaussian attacks.
Sized to run in a few minutes on a 2-core CPU (25 images: Monte Carlo through the real
network, 25 x 4 x 10^4 LeNet-5 forward passes, is most of the time); the full protocol
of the issue (the ``analytic`` task's default, 100 images) is
``--config.analytic.num_images=100`` (about 10 minutes). Other models:
``--config.model.name=lenet_bibi`` (1,024 hidden units at the split: slower; lower
``analytic.image_chunk`` if memory is short).
"""

from analytic import study


def get_config():
    config = study.defaults()
    config.model.name = "lenet5"
    config.data.name = "digits"
    config.train.epochs = 15
    config.analytic.num_images = 25
    config.analytic.noise_levels = (0.01, 0.03, 0.1, 0.3)
    config.analytic.mc_samples = 10_000
    return config
