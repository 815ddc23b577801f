"""Internal codes of LeNet-5 on digits through one self-organizing map per layer and
seed, for clean, PGD and FGSM inputs (reuses the run folder's trained models)."""

import ml_collections


def get_config():
    return ml_collections.ConfigDict({"task": "som"})
