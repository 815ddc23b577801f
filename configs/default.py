"""The default study: every lens on LeNet-5 trained on the bundled digits data.

`python scripts/run.py` runs this: it trains LeNet-5 once, then runs the input attacks,
the weight perturbations, the SOM codes, the Min-Max study (its own lambda x seed grid)
and the analytic moments, and writes runs/default/report.md with the findings table.
The settings are the lenses' own configs scaled to finish in under 10 minutes on a
2-core CPU; each lens's config (configs/NAME.py) runs it at full size.
"""

from study import default as study


def get_config():
    config = study.defaults()
    config.model.name = "lenet5"
    config.data.name = "digits"
    config.train.epochs = 15
    # attacks: all of them, on 200 test images
    config.attacks.images = 200
    config.attacks.cw_steps = 50
    config.attacks.cw_search_steps = 3
    # weight perturbations: 5 trials per setting
    config.weights.trials = 5
    # minmax: 3 lambdas x 2 seeds, one vmapped run
    config.minmax.seeds = (0, 1)
    # analytic: 30 images, 2,000 Monte Carlo samples per image and noise level
    config.analytic.num_images = 30
    config.analytic.mc_samples = 2_000
    config.analytic.attack.num_images = 10
    return config
