"""Config files, one per experiment: ``get_config() -> ml_collections.ConfigDict``.

Plain data that imports nothing of this project's; each sets ``task`` and only the keys
that differ from that task's defaults. Installed, they travel as ``experiments.configs``.
"""
