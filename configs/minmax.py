"""The Min-Max study (seed 000, Shen et al., arXiv 2011.13719): LeNet-5 on digits,
lambda in {0, 10, 100} x 3 seeds = 9 models trained side by side in one vmapped run,
8 epochs, then FGSM and PGD-10 on 200 test images over linf eps {0, .05, .1, .2, .3}.

``--config.data.name=mnist5k`` runs it on 5,000 real MNIST digits.
"""

import ml_collections


def get_config():
    return ml_collections.ConfigDict({"task": "minmax", "train": {"epochs": 8}})
