"""Min-Max property of conv weights (seed 000). Arrives with its own issue."""
