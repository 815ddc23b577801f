"""Shared fixtures of the attack tests."""

import functools

import pytest

from nets import data, models, train


@functools.cache
def _digits_mlp():
    """An MLP trained briefly on digits (about 96% test accuracy): (net, params, test set).
    Trained once per test process, shared by the attack test files."""
    tr, te = data.load("digits", "train"), data.load("digits", "test")
    net = models.mlp(hidden=(64,))
    states, _ = train.fit(net, tr, te, train.TrainSpec(epochs=8, learning_rate=3e-3))
    return net, train.select(states, 0)["params"], te


@pytest.fixture(scope="module")
def digits_mlp():
    """(net, params, digits test set) of the shared briefly trained MLP."""
    return _digits_mlp()
