"""Robust accuracy of LeNet-5 on digits under FGSM, BIM, PGD, MI-FGSM, PGD-L2, DeepFool
and CW-L2 over linf and l2 eps grids (a few minutes on a 2-core CPU; reuses the run
folder's trained model when present)."""

from attacks import study


def get_config():
    config = study.defaults()
    config.model.name = "lenet5"
    config.data.name = "digits"
    config.train.epochs = 15
    return config
