"""Internal weight perturbations of LeNet-5 on digits (Cheney et al., arXiv 1703.08245).

Trains 15 epochs (or restores the run folder's checkpoint), then sweeps every conv and
dense layer x {synapse knockout, node knockout, Gaussian mutation, resampling} x
{weights, biases} x p in {0, 0.1, ..., 1} x 10 trials: about two minutes on a 2-core CPU.

The paper's setting, AlexNet on CIFAR-10 once prepared (see README):
``--config.model.name=alexnet --config.data.name=cifar10 --config.data.data_dir=DIR``;
memory grows as len(p) x trials x weights.chunk x the largest activation, so lower
``weights.chunk`` for big networks.
"""

from attacks import weights_study


def get_config():
    config = weights_study.defaults()
    config.model.name = "lenet5"
    config.data.name = "digits"
    config.train.epochs = 15
    config.train.batch_size = 64
    config.train.learning_rate = 1e-3
    config.weights.trials = 10
    return config
