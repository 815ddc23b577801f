"""The composed study: every lens on one trained model and one findings report.

``study.default.run(config, run_dir)`` is what ``python scripts/run.py`` runs with no
arguments (configs/default.py); ``study.findings`` turns each lens's results into rows
of the findings table.
"""
