"""The default study: every lens on LeNet-5 trained on the bundled digits data, 3 seeds.

``python scripts/run.py`` runs this: it trains the seeds once in one vmapped run, then
runs the input attacks (with AutoAttack on the standard and on PGD-AT models), the
weight perturbations, the SOM codes, the Min-Max study (its own lambda x seed grid)
and the analytic moments on every seed, and writes
runs/default/report.md with the findings table. The settings below scale the lenses
down to finish in under 10 minutes on a 2-core CPU; each lens's config (configs/NAME.py)
runs it at full size.
"""

import ml_collections


def get_config():
    return ml_collections.ConfigDict({
        "task": "study",
        "attacks": {"images": 200, "cw_steps": 50, "cw_search_steps": 3,
                    # reduced AutoAttack budgets (the reference: 100 steps, 9 targets,
                    # 5,000 queries, as configs/attacks.py runs it) and a 3-step PGD-AT
                    "autoattack": {"steps": 20, "targets": 3, "queries": 500,
                                   "adv_steps": 3}},
        "weights": {"trials": 5},
        # Min-Max: one lambda per reading (group, trajectory, init) next to the shared
        # lambda = 0, and a 3-step PGD-AT for the reverse test, on 100 attacked images
        # (configs/minmax.py: lambdas 0, 10, 100, 7-step PGD-AT, 200 images)
        "minmax": {"lambdas": (0.0, 100.0), "adv_steps": 3, "images": 100},
        "analytic": {"num_images": 30, "mc_samples": 2000, "attack": {"num_images": 10}},
    })
