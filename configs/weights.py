"""Internal weight perturbations of LeNet-5 on digits (Cheney et al., arXiv 1703.08245).

Trains (or restores the run folder's checkpoint), then sweeps every conv and dense layer
x {synapse knockout, node knockout, Gaussian mutation, resampling} x {weights, biases}
x p in {0, 0.1, ..., 1} x 10 trials, for every seed.

The paper's setting, AlexNet on CIFAR-10 once prepared (see README):
``--config.model.name=alexnet --config.data.name=cifar10 --config.data.data_dir=DIR``;
memory grows as len(p) x trials x weights.chunk x the largest activation, so lower
``weights.chunk`` for big networks.
"""

import ml_collections


def get_config():
    return ml_collections.ConfigDict({"task": "weights"})
