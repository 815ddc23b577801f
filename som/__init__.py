"""Self-organizing maps of layer codes (seed 001). Arrives with its own issue."""
