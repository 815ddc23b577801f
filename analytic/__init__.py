"""Closed-form Gaussian moments of Affine-ReLU-Affine nets (Bibi, Alfadly, Ghanem, CVPR
2018; DESIGN.md, analytic/), the two-stage linearization of deeper nets, and their uses.

Modules: ``bvn`` (bivariate normal cdf, Genz 2004), ``relu`` (ReLU moments of Gaussians,
zero-mean and exact general-mean), ``moments`` (output mean and covariance of
B relu(A x + c1) + c2), ``linearize``, ``montecarlo`` (the sampled reference), ``uses``
(class means vs noise, confusion, sensitivity maps) and ``study`` (the ``analytic`` task).
The Gaussian attacks are in :mod:`attacks.gaussian`.

    from analytic.linearize import linearize
    from analytic.moments import moments
    lin = linearize(net, params, x)                  # A, c1, B, c2 at the image x
    out = moments(lin, x, 0.1 ** 2, method="exact")  # x + N(0, 0.01 I): out.mean, out.cov
"""
