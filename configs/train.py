"""Train LeNet-5 on the bundled digits data (about a minute on a 2-core CPU)."""

from nets import experiment


def get_config():
    config = experiment.defaults()
    config.model.name = "lenet5"
    config.data.name = "digits"
    config.train.epochs = 15
    config.train.batch_size = 64
    config.train.learning_rate = 1e-3
    return config
