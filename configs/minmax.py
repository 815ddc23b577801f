"""The Min-Max study (seed 000, Shen et al., arXiv 2011.13719): LeNet-5 on digits, three
readings of "interval" (group, trajectory, init). Conditions: lambda = 0 and, per reading,
its penalty at lambda 10 and 100 (7 conditions) x 3 seeds = 21 models trained side by
side in one vmapped run, 8 epochs; the same 3 seeds with PGD-AT (eps 0.1, 7 steps) for
the reverse test; then FGSM and PGD-10 on 200 test images over linf eps
{0, .05, .1, .2, .3} for all 24 models.

``--config.data.name=mnist5k`` runs it on 5,000 real MNIST digits.
"""

import ml_collections


def get_config():
    return ml_collections.ConfigDict({"task": "minmax", "train": {"epochs": 8}})
