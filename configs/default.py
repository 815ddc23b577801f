"""The default study (what `python scripts/run.py` runs with no arguments).

For now it is the foundation's training study on `digits`; the lens studies join it as
they land.
"""

from nets import experiment


def get_config():
    return experiment.defaults()
