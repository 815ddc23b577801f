"""Robust accuracy of LeNet-5 on digits under FGSM, BIM, PGD, MI-FGSM, PGD-L2, DeepFool
and CW-L2 over linf and l2 eps grids, for every seed (a few minutes on a 2-core CPU;
reuses the run folder's trained models when present)."""

import ml_collections


def get_config():
    return ml_collections.ConfigDict({"task": "attacks"})
