"""Internal codes of LeNet-5 on digits through one self-organizing map per layer, for
clean, PGD and FGSM inputs (about a minute on a 2-core CPU; reuses the run folder's
trained model when present)."""

from som import study


def get_config():
    config = study.defaults()
    config.model.name = "lenet5"
    config.data.name = "digits"
    config.train.epochs = 15
    return config
