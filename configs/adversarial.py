"""A robust LeNet-5 on digits: PGD adversarial training (Madry et al., ICLR 2018), 3
seeds in one vmapped run (2 min 26 s on a shared 2-core CPU; standard training: 23 s).

Linf eps = 0.1 on [0, 1] pixels, not MNIST's usual 0.3: the digits are 8x8 scans with 17
grey levels (steps of 1/16) upsampled to 28x28, and already at eps 0.2 a PGD-AT LeNet-5
keeps 0.89 clean but only 0.2 robust accuracy. Each training step attacks its batch
with 7 sign-gradient steps of 2.5 eps / 7 from a uniform random start; eps ramps up over
the first 3 epochs, without which training can stall at the constant prediction.

Measured (this config, test set of 450, PGD-20 at eps 0.05 / 0.1, mean of the 3 seeds):
clean 0.974, robust 0.884 / 0.647; standard training (configs/train.py): clean 0.979,
robust 0.719 / 0.156; TRADES (``--config.train.adversarial=trades``, beta
``train.trades_beta`` = 6, Zhang et al., ICML 2019): clean 0.958, robust 0.875 / 0.658.

Evaluate the models with the attacks lens on the same training settings:
``--config attacks --config.train.adversarial=pgd --config.train.adv_warmup=3``.
"""

import ml_collections


def get_config():
    return ml_collections.ConfigDict({
        "task": "train",
        "train": {"adversarial": "pgd", "adv_eps": 0.1, "adv_steps": 7, "adv_warmup": 3},
    })
