"""Closed-form Gaussian moments of Affine-ReLU-Affine nets (seed 003). Arrives with its own issue."""
