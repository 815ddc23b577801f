"""What a layer's map says about its codes: unit usage, class dispersion on the grid,
BMU-label mutual information, and how far adversarial inputs move the BMU.

All functions take BMU indices (``units``, int (N,)) and are jittable and vmappable over
layers. Grid positions are the plane coordinates of ``som.grid.Grid.coords``.

* distinct BMUs: number of units that win at least one input.
* class dispersion: for class k with BMU positions p_i, centroid m_k = mean p_i and
  D_k = mean ||p_i - m_k||; the measure is the mean of D_k over the classes present
  (grid units). ``spread`` is the same with all inputs as one class; the ratio
  dispersion / spread is ~1 when classes are mixed over the map and -> 0 when each class
  sits in its own region.
* mutual information I(B; Y) = sum_{b,y} p(b,y) log2(p(b,y) / (p(b) p(y))), the plug-in
  estimate in bits from the contingency table; normalized by the label entropy H(Y)
  (the fraction of label information the BMU carries, in [0, 1]). The plug-in estimate is
  biased upwards by about (|B|-1)(|Y|-1) / (2 N ln 2) bits (Miller 1955) - large for a
  100-unit map and a few hundred inputs - so :func:`shuffled_mutual_information` gives
  the same estimate with labels permuted (the bias floor), and the study reports
  I - I_shuffled as well.
* BMU moves: fraction of inputs whose adversarial BMU differs from the clean one, and
  the mean grid distance between the two (over all inputs, and over moved inputs).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array


@functools.partial(jax.jit, static_argnames=("num_units",))
def distinct_units(units: Array, num_units: int) -> Array:
    """Number of distinct BMUs among ``units``."""
    return (jnp.bincount(units, length=num_units) > 0).sum()


def _class_means(values: Array, labels: Array, num_classes: int) -> tuple[Array, Array]:
    onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    count = onehot.sum(0)
    return onehot.T @ values / jnp.maximum(count, 1.0)[:, None], count


@functools.partial(jax.jit, static_argnames=("num_classes",))
def class_dispersion(units: Array, labels: Array, coords: Array, num_classes: int) -> Array:
    """Mean over classes of the mean grid distance of a class's BMUs to their centroid."""
    xy = jnp.asarray(coords)[units]
    centroid, count = _class_means(xy, labels, num_classes)
    dist = jnp.linalg.norm(xy - centroid[labels], axis=-1)
    per_class, _ = _class_means(dist[:, None], labels, num_classes)
    present = count > 0
    return jnp.sum(jnp.where(present, per_class[:, 0], 0.0)) / jnp.maximum(present.sum(), 1)


@jax.jit
def spread(units: Array, coords: Array) -> Array:
    """Mean grid distance of all BMUs to their common centroid."""
    xy = jnp.asarray(coords)[units]
    return jnp.linalg.norm(xy - xy.mean(0), axis=-1).mean()


def _entropy_bits(p: Array) -> Array:
    return -jnp.sum(jnp.where(p > 0, p * jnp.log2(jnp.where(p > 0, p, 1.0)), 0.0))


@functools.partial(jax.jit, static_argnames=("num_classes",))
def label_entropy(labels: Array, num_classes: int) -> Array:
    """H(Y) in bits of the empirical label distribution."""
    return _entropy_bits(jnp.bincount(labels, length=num_classes) / labels.shape[0])


@functools.partial(jax.jit, static_argnames=("num_units", "num_classes"))
def mutual_information(units: Array, labels: Array, num_units: int, num_classes: int) -> Array:
    """Plug-in I(BMU; label) in bits: H(B) + H(Y) - H(B, Y) of the empirical joint
    (the contingency table as a one-hot matmul)."""
    joint = jax.nn.one_hot(units, num_units).T @ jax.nn.one_hot(labels, num_classes)
    joint = joint / units.shape[0]
    return _entropy_bits(joint.sum(1)) + _entropy_bits(joint.sum(0)) - _entropy_bits(joint)


@functools.partial(jax.jit, static_argnames=("permutations",))
def shuffle_labels(key: Array, labels: Array, permutations: int = 20) -> Array:
    """(permutations, N) random relabelings of ``labels`` (shared by every layer)."""
    order = jnp.argsort(jax.random.uniform(key, (permutations, labels.shape[0])), axis=1)
    return labels[order]


@functools.partial(jax.jit, static_argnames=("num_units", "num_classes"))
def shuffled_mutual_information(units: Array, shuffled: Array, num_units: int,
                                num_classes: int) -> Array:
    """Mean plug-in MI of ``units`` with each row of ``shuffled`` labels: the bias floor."""
    return jax.vmap(lambda y: mutual_information(units, y, num_units, num_classes))(
        shuffled).mean()


@jax.jit
def bmu_moves(clean: Array, adversarial: Array, coords: Array) -> dict[str, Array]:
    """How many BMUs move under attack and how far on the grid."""
    xy = jnp.asarray(coords)
    moved = clean != adversarial
    dist = jnp.linalg.norm(xy[clean] - xy[adversarial], axis=-1)
    n_moved = moved.sum()
    return {
        "moved_fraction": moved.mean(dtype=jnp.float32),
        "mean_distance": dist.mean(),
        "mean_distance_moved": jnp.where(n_moved > 0, dist.sum() / jnp.maximum(n_moved, 1),
                                         0.0),
    }


@functools.partial(jax.jit, static_argnames=("num_units", "num_classes"))
def code_measures(units: Array, labels: Array, shuffled: Array, coords: Array, num_units: int,
                  num_classes: int) -> dict[str, Array]:
    """All clean-input measures of one layer's BMUs (see module doc); ``shuffled``
    (P, N) holds permuted copies of ``labels`` (:func:`shuffle_labels`)."""
    h_y = label_entropy(labels, num_classes)
    mi = mutual_information(units, labels, num_units, num_classes)
    mi_shuf = shuffled_mutual_information(units, shuffled, num_units, num_classes)
    disp = class_dispersion(units, labels, coords, num_classes)
    spr = spread(units, coords)
    return {
        "distinct_bmus": distinct_units(units, num_units),
        "distinct_bmus_fraction": distinct_units(units, num_units) / num_units,
        "class_dispersion": disp,
        "spread": spr,
        "class_dispersion_ratio": disp / jnp.maximum(spr, 1e-12),
        "mi_bits": mi,
        "mi_shuffled_bits": mi_shuf,
        "nmi": mi / h_y,
        "nmi_corrected": (mi - mi_shuf) / h_y,
    }


@jax.jit
def agreement(units: Array, unit_class: Array, targets: Array) -> Array:
    """Fraction of inputs whose BMU's class (``unit_class`` (M,), -1 for none) is ``targets``.

    With ``unit_class`` the majority training label of each unit and ``targets`` the
    network's predictions, this says whether the layer's code already sits in the region
    of the class the network ends up choosing (for adversarial inputs: the wrong class).
    """
    return (unit_class[units] == targets).mean(dtype=jnp.float32)
