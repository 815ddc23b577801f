"""The Min-Max study (seed 000, Shen et al., arXiv 2011.13719): LeNet-5 on digits,
lambda in {0, 10, 100} x 3 seeds = 9 models trained side by side in one vmapped run,
8 epochs, then FGSM and PGD-10 on 200 test images over linf eps {0, .05, .1, .2, .3}.
A few minutes on a 2-core CPU.

``--config.data.name=mnist --config.data.data_dir=DIR`` runs it on a prepared MNIST.
"""

from minmax import study


def get_config():
    config = study.defaults()
    config.model.name = "lenet5"
    config.data.name = "digits"
    config.train.epochs = 8
    config.train.batch_size = 64
    config.train.learning_rate = 1e-3
    config.minmax.lambdas = (0.0, 10.0, 100.0)
    config.minmax.seeds = (0, 1, 2)
    return config
