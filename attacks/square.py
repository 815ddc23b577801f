"""Square Attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020): a score-based
black-box attack by random search, linf and l2, as the reference implementation
(fra31/auto-attack ``autoattack/square.py``, also ``torchattacks.Square``).

It reads only the model's logits (no gradient is ever taken, so models whose gradients
are useless, e.g. ``jnp.round`` or ``stop_gradient`` inside, are attacked as well). Per
example, starting from ``x_0`` (below), each of ``queries`` iterations proposes

    x_new = Proj( x_best + a random square update of side s_t ),

evaluates the model once, and keeps ``x_new`` only if it lowers the loss

    L = margin   = z_y - max_{k != y} z_k        (untargeted, default; or -CE(z, y))
    L = CE(z, t)                                 (targeted towards t, default; or the
                                                  margin max_{k != t} z_k - z_t)

(or if it is misclassified: margin <= 0). An example stops once its margin is <= 0.

* linf: x_0 = clip(x + eps * sign), one random sign per (column, channel): vertical
  stripes. The update sets a random s x s window (all channels, one random sign per
  channel) to x +- eps.
* l2: x_0 = x + eps * d / ||d||_2 with d a grid of ``h // 5``-sided blocks, each the
  reference's ``eta`` pattern (two opposite half-blocks of nested squares with weights
  1 / (k+1)^2) times a random sign per channel, randomly transposed. The update moves
  the mass of a second random window into the first and adds a fresh ``eta`` there,
  then rescales the whole perturbation to norm eps.
* The window side follows p_t: p_init halves at iteration fractions 10, 50, 200, 500,
  1000, 2000, 4000, 6000, 8000 (per 10,000) of the query budget, and
  s_t = round(sqrt(p_t h w)) (at least 1 for linf; at least 3 and odd for l2; at most
  min(h, w)). :func:`window_sides` computes it on the host, in float64, exactly as the
  reference, and the loop reads s_t from it (a traced int: the window is a mask from
  iota comparisons, so every iteration has the same shapes).
* ``restarts``: each restart runs from a new random x_0 for the examples no earlier
  restart (and not the clean input) fooled, as the reference; the result is the first
  fooling point found, or x itself for an example never fooled.

Differences from the reference, all in what is shared across a batch: the reference
draws one window position, one sign per channel and one transpose per iteration for the
whole batch; here each example draws its own from its own key (``per_example_keys``), so
an example's result does not depend on the batch or the chunking. Positions are drawn
from [0, h - s) as the reference does (the last position h - s is never used). The l2
initial grid keeps only whole blocks (the reference fails on image sizes where a block
would cross the border) and uses blocks of side max(h // 5, 1).

Queries: one clean evaluation, then per restart one evaluation of x_0 and at most
``queries`` more, so at most 1 + restarts * (queries + 1) model evaluations per example,
charged only for the iterations it was still active (:func:`square_with_queries` returns
that count).

Work: a chunk's iterations are a ``lax.while_loop`` that evaluates every example of the
chunk until its last one is fooled, so one robust example keeps a whole chunk running for
the full budget. Outside a caller's jit the loop therefore runs from the host in segments
(16, 32, 64, ... iterations, at most 500, :func:`segment_ends`) and between segments the
examples still unfooled are re-packed into smaller chunks (power-of-two sizes,
:func:`attacks.common.bucket_sizes`): the work follows the examples left. Every random
number is a function of (example key, restart, iteration), so the result is the same
either way (tested; up to the model's own rounding, where XLA computes a row differently
in a call of another size: none on the LeNet-5 below, ~1e-5 for a dense layer's dot). On the PGD-AT LeNet-5 (1,000 mnist5k images, eps 0.3, 1,000
queries) this cut Square from 39.9 s to 16.6 s (second calls, same process).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from attacks.common import (
    NORMS,
    Array,
    Bounds,
    LogitsFn,
    as_pytree_fn,
    bucket_limit,
    check_args,
    check_inputs,
    chunk_size,
    finite_eps,
    per_example_keys,
    run_bucketed,
    run_chunked,
    success,
)
from nets import xla

# Examples per jitted call on CPU, the default of the other input attacks: on the digits
# MLP (450 images of 28x28, 1,000 queries) chunks of 64, 128, 256 and 450 took the same
# time within the noise of the shared 2-core machine.
CPU_CHUNK = 128

# p_t = p_init / 2^k after the k-th of these iterations (out of 10,000; rescaled to the
# query budget): the reference's ``p_selection``.
P_BREAKPOINTS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
LOSSES = ("margin", "ce")


def p_schedule(queries: int, p_init: float) -> np.ndarray:
    """p_t for t = 0..queries-1: p_init / 2^k, k = #{b in P_BREAKPOINTS : t' > b} with
    t' = int(t / queries * 10000) (the reference's rescaled ``p_selection``, in float64)."""
    t = (np.arange(queries) / queries * 10000).astype(np.int64)
    halvings = (t[:, None] > np.asarray(P_BREAKPOINTS)[None, :]).sum(1)
    return p_init / 2.0 ** halvings


def window_sides(queries: int, p_init: float, shape: tuple[int, ...], norm: str) -> np.ndarray:
    """The square's side s_t per iteration for images of ``shape`` (h, w, c):
    round(sqrt(p_t h w)), at least 1 (linf) or at least 3 and odd (l2), at most min(h, w)."""
    h, w, c = shape
    p = p_schedule(queries, p_init)
    s = np.round(np.sqrt(p * (h * w * c) / c)).astype(np.int64)  # Python's round: half to even
    if norm == "linf":
        s = np.maximum(s, 1)
    else:
        s = np.maximum(s, 3)
        s = s + (s % 2 == 0)
    return np.minimum(s, min(h, w)).astype(np.int32)


def _eta_axis(i: Array, s, scale: tuple[Array, Array], m: int) -> tuple[Array, ...]:
    """The eta pattern of side ``s`` (<= m) split into per-axis factors at window
    coordinates ``i`` (1-D ints): (f, t_a, t_b, inside), with the pattern
    f[a] * min(t_a[a], t_b[b]) * inside[b] for a the coordinate across the split (rows,
    untransposed) and b the other one.

    A half-block of r rows and s columns has, at Chebyshev distance d = max(d_a, d_b)
    from its centre (r//2, s//2), the value T(d) = sum_{k=d}^{K-1} 1/(k+1)^2 with
    K = s//2 + 1; T decreases in d, so T(max(d_a, d_b)) = min(T(d_a), T(d_b)). f carries
    the sign (+ top half, - bottom half) and ``scale`` (top, bottom), the normalization."""
    half = s // 2
    k = half + 1
    inside = (i >= 0) & (i < s)
    top = i < half
    lo = jnp.where(top, 0, half)
    rows = jnp.where(top, half, s - half)

    def t(d):  # T(d) as a sum of m//2 + 1 masked terms: no gather
        return sum(jnp.where((d <= q) & (q < k), 1.0 / (q + 1) ** 2, 0.0)
                   for q in range(m // 2 + 1))

    f = jnp.where(inside, jnp.where(top, scale[0], -scale[1]), 0.0)
    dtype = f.dtype
    return (f, t(jnp.abs(i - lo - rows // 2)).astype(dtype), t(jnp.abs(i - half)).astype(dtype),
            inside.astype(dtype))


def _eta_scale(s, m: int, dtype) -> tuple[Array, Array]:
    """(top, bottom) factors that give each half-block unit l2 norm, then the whole
    pattern unit l2 norm (an empty half, s = 1, stays 0)."""
    i = jnp.arange(m)
    one = jnp.ones((), dtype)
    f, ta, tb, inside = _eta_axis(i, s, (one, one), m)
    raw = f[:, None] * jnp.minimum(ta[:, None], tb[None, :]) * inside[None, :]
    top = (i < s // 2)[:, None]
    n_top = jnp.sqrt(jnp.sum(jnp.where(top, raw * raw, 0.0)))
    n_bottom = jnp.sqrt(jnp.sum(jnp.where(top, 0.0, raw * raw)))
    total = jnp.sqrt((n_top > 0).astype(dtype) + (n_bottom > 0))
    return (1.0 / jnp.maximum(n_top, 1e-30) / total, 1.0 / jnp.maximum(n_bottom, 1e-30) / total)


def _place_eta(s, vh: Array, vw: Array, flip: Array, h: int, w: int, scale) -> Array:
    """Per example n (vh, vw, flip of shape (N,)), eta(s), transposed if flip[n], placed
    with its corner at (vh[n], vw[n]) in an (h, w) array of zeros: (N, h, w).

    The value is rows[r] * cols[q] * min(t_rows[r], t_cols[q]) with the per-axis factors
    of :func:`_eta_axis` picked for the orientation: 1-D work per example, one 2-D pass,
    no 2-D gather. (The factors are stacked per example under a vmap: XLA then computes
    them once, where as separate arrays it recomputed them about 3x slower.)"""

    m = max(h, w)

    def factors(a, b):
        return (jnp.stack(_eta_axis(jnp.arange(h) - a, s, scale, m)),
                jnp.stack(_eta_axis(jnp.arange(w) - b, s, scale, m)))

    r, c = jax.vmap(factors)(vh, vw)  # (N, 4, h), (N, 4, w): f, t_a, t_b, inside
    flip = flip[:, None]
    rows, t_rows = jnp.where(flip, r[:, 3], r[:, 0]), jnp.where(flip, r[:, 2], r[:, 1])
    cols, t_cols = jnp.where(flip, c[:, 0], c[:, 3]), jnp.where(flip, c[:, 1], c[:, 2])
    return rows[:, :, None] * cols[:, None, :] * jnp.minimum(t_rows[:, :, None],
                                                            t_cols[:, None, :])


def eta(s, m: int, dtype=jnp.float32) -> Array:
    """The reference's l2 update pattern of side ``s`` (may be traced), in the top-left of
    an (m, m) array of zeros (m >= s static, so every s has one shape).

    Rows [0, s//2) hold +A and rows [s//2, s) hold -B, where each half-block of r rows and
    s columns has, at Chebyshev distance d from its centre (r//2, s//2), the value
    sum_{k=d}^{K-1} 1/(k+1)^2 with K = s//2 + 1 (nested squares of weight 1/(k+1)^2),
    scaled to unit l2 norm; the whole pattern has unit l2 norm."""
    zero = jnp.zeros(1, jnp.int32)
    return _place_eta(s, zero, zero, zero > 0, m, m, _eta_scale(s, m, dtype))[0]


def margin_and_loss(logits: Array, y: Array, targeted: bool, loss: str) -> tuple[Array, Array]:
    """(margin, loss), both minimized by the attack; margin <= 0 means fooled.

    Untargeted: margin = z_y - max_{k != y} z_k; loss = margin or -CE(z, y).
    Targeted (y the target): margin = max_{k != y} z_k - z_y; loss = CE(z, y) or margin."""
    z_y = jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
    others = jnp.where(jax.nn.one_hot(y, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    z_other = others.max(-1)
    margin = z_other - z_y if targeted else z_y - z_other
    if loss == "margin":
        return margin, margin
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return margin, (ce if targeted else -ce)


def _signs(u: Array) -> Array:
    """+-1 from uniforms: +1 where u > 1/2 (the reference's ``random_choice``)."""
    return jnp.where(u > 0.5, 1.0, -1.0).astype(u.dtype)


def _corner(u: Array, side: int, s) -> Array:
    """A window corner from a uniform: floor(u (side - s)), in [0, side - s) as the
    reference's ``random_int(0, side - s)`` (0 when s equals the side)."""
    return jnp.clip(jnp.floor(u * (side - s)).astype(jnp.int32), 0, jnp.maximum(side - s - 1, 0))


def _window(vh: Array, vw: Array, s, h: int, w: int) -> Array:
    """(h, w) mask of the s x s window with corner (vh, vw), from iota comparisons (s and
    the corner may be traced: every window has the same shape)."""
    rows = jnp.arange(h)[:, None]
    cols = jnp.arange(w)[None, :]
    return (rows >= vh) & (rows < vh + s) & (cols >= vw) & (cols < vw + s)


def _init_linf(key: Array, x: Array, eps: Array, bounds: Bounds) -> Array:
    """One example's start: vertical stripes, x + eps * sign with one sign per (column,
    channel) shared by all rows, clipped to the bounds."""
    _, w, c = x.shape
    return jnp.clip(x + eps * _signs(jax.random.uniform(key, (1, w, c), x.dtype)), *bounds)


def _init_grid(h: int, w: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """The l2 start's block layout (static): block side s, and per pixel the block index
    (-1 outside every block) and the row / column inside its block."""
    s = max(h // 5, 1)
    start = max((h - 5 * s) // 2, 0)  # the reference's sp_init, used for rows and columns
    r0 = [start + k * s for k in range(h // s) if start + (k + 1) * s <= h]
    c0 = [start + k * s for k in range(w // s) if start + (k + 1) * s <= w]
    block = -np.ones((h, w), np.int32)
    local_r = np.zeros((h, w), np.int32)
    local_c = np.zeros((h, w), np.int32)
    for a, r in enumerate(r0):
        for b, q in enumerate(c0):
            block[r:r + s, q:q + s] = a * len(c0) + b
            local_r[r:r + s, q:q + s] = np.arange(s)[:, None]
            local_c[r:r + s, q:q + s] = np.arange(s)[None, :]
    return s, block, local_r, local_c


def _l2_normalize(d: Array) -> Array:
    """d / (||d||_2 + 1e-12), as the reference's ``normalize``."""
    return d / (jnp.sqrt(jnp.sum(d * d)) + 1e-12)


def _init_l2(key: Array, x: Array, eps: Array, bounds: Bounds) -> Array:
    """One example's start: a grid of eta blocks with random signs per (block, channel)
    and random transposes per block, scaled to l2 norm eps, clipped to the bounds."""
    h, w, c = x.shape
    s, block, lr, lc = _init_grid(h, w)
    n_blocks = max(int(block.max()) + 1, 1)
    e = eta(s, s, x.dtype)
    u = jax.random.uniform(key, (n_blocks, c + 1), x.dtype)
    b = jnp.asarray(np.maximum(block, 0))
    val = jnp.where(u[b, c] > 0.5, e[lc, lr], e[lr, lc])
    delta = jnp.where(jnp.asarray(block >= 0)[..., None], val[..., None] * _signs(u[b, :c]), 0.0)
    return jnp.clip(x + _l2_normalize(delta) * eps, *bounds)


def _step_linf(u: Array, x: Array, x_best: Array, eps: Array, s, bounds: Bounds) -> Array:
    """One example's proposal from its uniforms ``u`` (2 + c): an s x s window (all
    channels) of x_best set to x + eps * sign (one sign per channel), clipped."""
    h, w, _ = x.shape
    mask = _window(_corner(u[0], h, s), _corner(u[1], w, s), s, h, w)
    corner = jnp.clip(x + eps * _signs(u[2:]), *bounds)
    return jnp.where(mask[..., None], corner, x_best)


def _step_l2(u: Array, pattern: Array, x: Array, x_best: Array, eps: Array, s,
             bounds: Bounds) -> Array:
    """One example's proposal (the reference's l2 update), per channel:

        new = eta * sign + delta|W1 / ||delta|W1||,
        new <- new / ||new|| * sqrt(max(eps^2 - ||delta||^2, 0) / c + ||delta|W1uW2||^2),

    delta|W2 <- 0, delta|W1 <- new, then x_new = clip(x + eps * delta / ||delta||).
    W1, W2 are two random s x s windows from the uniforms ``u`` (5 + c: corners of W1,
    corners of W2, the transpose, the signs); ``pattern`` is eta placed on W1."""
    h, w, c = x.shape
    m1 = _window(_corner(u[0], h, s), _corner(u[1], w, s), s, h, w)[..., None]
    m2 = _window(_corner(u[2], h, s), _corner(u[3], w, s), s, h, w)[..., None]

    def channel_norm(v):
        return jnp.sqrt(jnp.sum(v * v, axis=(0, 1)))

    delta = x_best - x
    d1 = jnp.where(m1, delta, 0.0)
    norm_image = jnp.sqrt(jnp.sum(delta * delta))
    norm_windows = channel_norm(jnp.where(m1 | m2, delta, 0.0))
    new = pattern[..., None] * _signs(u[5:]) + d1 / (1e-12 + channel_norm(d1))
    size = jnp.sqrt(jnp.maximum(eps * eps - norm_image ** 2, 0.0) / c + norm_windows ** 2)
    new = new / (1e-12 + channel_norm(new)) * size
    delta = jnp.where(m1, new, jnp.where(m2, 0.0, delta))
    return jnp.clip(x + _l2_normalize(delta) * eps, *bounds)


def _fold(keys: Array, i) -> Array:
    return jax.vmap(jax.random.fold_in, (0, None))(keys, i)


def _evaluate(fn, xa: Array, y: Array, targeted: bool, loss: str):
    """(margin, loss, success) of the model at ``xa``: one model evaluation."""
    logits = fn(xa)
    margin, value = margin_and_loss(logits, y, targeted, loss)
    return margin, value, success(logits, y, targeted)


def _start(fn, x, y, kr, eps, *, norm, targeted, loss, bounds):
    """A restart's x_0 (from fold_in(kr_i, 0)) and its (margin, loss, success)."""
    init = _init_linf if norm == "linf" else _init_l2
    x_best = jax.vmap(init, (0, 0, None, None))(_fold(kr, 0), x, eps, bounds)
    return (x_best, *_evaluate(fn, x_best, y, targeted, loss))


def _iterate(fn, x, y, kr, eps, sides, t0, t1, attacked, state, *, norm, targeted, loss,
             bounds):
    """Iterations t0 <= t < t1 of a restart (a ``lax.while_loop`` that also ends once no
    example is active: attacked and margin > 0). ``state``: (x_best, margin, value,
    fooled, count). Iteration t of example i draws from fold_in(kr_i, t + 1), so an
    example's path depends on its key and t only: on neither the batch nor where the
    loop is cut into segments."""
    h, w, c = x.shape[1:]
    expand = (slice(None),) + (None,) * (x.ndim - 1)
    n_u = (2 if norm == "linf" else 5) + c

    def cond(carry):
        t, _, margin, *_ = carry
        return (t < t1) & jnp.any(attacked & (margin > 0))

    def body(carry):
        t, x_best, margin, value, fooled, count = carry
        active = attacked & (margin > 0)
        s = sides[t]
        u = jax.vmap(lambda k: jax.random.uniform(k, (n_u,), x.dtype))(_fold(kr, t + 1))
        if norm == "linf":
            x_new = jax.vmap(_step_linf, (0, 0, 0, None, None, None))(
                u, x, x_best, eps, s, bounds)
        else:
            pattern = _place_eta(s, _corner(u[:, 0], h, s), _corner(u[:, 1], w, s),
                                 u[:, 4] > 0.5, h, w, _eta_scale(s, min(h, w), x.dtype))
            x_new = jax.vmap(_step_l2, (0, 0, 0, 0, None, None, None))(
                u, pattern, x, x_best, eps, s, bounds)
        m_new, v_new, f_new = _evaluate(fn, x_new, y, targeted, loss)
        improved = active & (v_new < value)
        accept = active & ((v_new < value) | (m_new <= 0))
        value = jnp.where(improved, v_new, value)
        margin = jnp.where(accept, m_new, margin)
        fooled = jnp.where(accept, f_new, fooled)
        x_best = jnp.where(accept[expand], x_new, x_best)
        return t + 1, x_best, margin, value, fooled, count + active

    _, *state = jax.lax.while_loop(cond, body, (jnp.asarray(t0, jnp.int32), *state))
    return tuple(state)


_STATIC = ("norm", "targeted", "loss", "bounds")


@functools.partial(xla.jit, static_argnames=(*_STATIC, "restarts"))
def _attack(fn, x, y, keys, eps, sides, *, norm, targeted, loss, bounds, restarts):
    """The whole attack on one chunk in one program: (x_adv, model evaluations charged
    per example). Every example of the chunk is evaluated at every iteration until the
    last one is done; used inside a caller's jit, where the batch is one program anyway
    (:func:`_attack_packed` is the host-driven form that drops finished examples).

    ``sides`` (queries,) int32 is :func:`window_sides`; example i draws restart r's
    start from fold_in(fold_in(keys[i], r), 0) and iteration t from fold_in(..., t + 1)."""
    eps = jnp.asarray(eps, x.dtype)
    static = {"norm": norm, "targeted": targeted, "loss": loss, "bounds": bounds}
    expand = (slice(None),) + (None,) * (x.ndim - 1)

    def restart(r, state):
        x_out, done, count = state
        kr = _fold(keys, r)
        x_best, margin, value, fooled = _start(fn, x, y, kr, eps, **static)
        attacked = ~done  # fooled already (clean or an earlier restart): not attacked
        x_best, _, _, fooled, count = _iterate(
            fn, x, y, kr, eps, sides, 0, sides.shape[0], attacked,
            (x_best, margin, value, fooled, count + attacked), **static)
        newly = attacked & fooled
        return jnp.where(newly[expand], x_best, x_out), done | newly, count

    done = success(fn(x), y, targeted)  # the clean evaluation
    count = jnp.ones(x.shape[0], jnp.int32)
    x_adv, _, count = jax.lax.fori_loop(0, restarts, restart, (x, done, count))
    return x_adv, count


@functools.partial(xla.jit, static_argnames=("targeted",))
def _clean_success(fn, x, y, *, targeted):
    return success(fn(x), y, targeted)


@functools.partial(xla.jit, static_argnames=_STATIC)
def _start_chunk(fn, x, y, keys, r, eps, *, norm, targeted, loss, bounds):
    """:func:`_start` of restart ``r`` on a packed chunk."""
    return _start(fn, x, y, _fold(keys, r), jnp.asarray(eps, x.dtype), norm=norm,
                  targeted=targeted, loss=loss, bounds=bounds)


@functools.partial(xla.jit, static_argnames=_STATIC)
def _segment_chunk(fn, x, y, keys, r, eps, sides, t0, t1, x_best, margin, value, fooled,
                   count, *, norm, targeted, loss, bounds):
    """Iterations [t0, t1) of restart ``r`` on a packed chunk of still-active examples
    (t0, t1 traced: one program per chunk shape for every segment)."""
    attacked = jnp.ones(x.shape[0], bool)
    return _iterate(fn, x, y, _fold(keys, r), jnp.asarray(eps, x.dtype), sides, t0, t1,
                    attacked, (x_best, margin, value, fooled, count), norm=norm,
                    targeted=targeted, loss=loss, bounds=bounds)


# Segment ends of the packed loop: the first after FIRST_SEGMENT iterations, each next
# one twice as long, at most MAX_SEGMENT: early segments drop the many examples fooled in
# a few queries, later ones cost one host round trip per MAX_SEGMENT iterations.
FIRST_SEGMENT = 16
MAX_SEGMENT = 500


def segment_ends(queries: int, first: int = FIRST_SEGMENT,
                 longest: int = MAX_SEGMENT) -> list[int]:
    """Iteration counts after which the packed loop re-packs the still-active examples:
    first, 2 first, 4 first, ... (steps of at most ``longest``), and ``queries``."""
    ends, t, step = [], 0, first
    while t < queries:
        t = min(t + step, queries)
        ends.append(t)
        step = min(2 * step, longest)
    return ends


def _attack_packed(fn, x, y, keys, eps, sides, size, *, restarts, segments, **static):
    """The attack driven from the host: each restart's iterations run in ``segments``
    (end iterations), and between segments the examples still active (attacked, margin
    > 0) are gathered into chunks of :func:`attacks.common.bucket_sizes` (at most
    ``size`` rows, the last padded to a power of two), so the model is evaluated on about
    as many rows as examples are left, not on the whole chunk until its slowest example
    is done. Per example the same arithmetic and random numbers as :func:`_attack`: the
    same (x_adv, count)."""
    n = x.shape[0]
    x_np, y_np = np.asarray(x), np.asarray(y)
    typed = jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key)
    keys_np = np.asarray(jax.random.key_data(keys) if typed else keys)

    def rows(a):  # host key data back to device keys
        return jax.random.wrap_key_data(a) if typed else jnp.asarray(a)

    def call(f, idx: np.ndarray, shared: tuple, *per_row: np.ndarray) -> list[np.ndarray]:
        """f(fn, x, y, keys, *shared, *per_row) on the rows ``idx``, in bucketed calls."""
        def one(xi, yi, ki, *rest):
            return f(fn, jnp.asarray(xi), jnp.asarray(yi), rows(ki), *shared,
                     *(jnp.asarray(a) for a in rest), **static)

        return [np.asarray(a) for a in run_bucketed(
            one, (x_np[idx], y_np[idx], keys_np[idx], *per_row), size)]

    clean = functools.partial(_clean_success, fn, targeted=static["targeted"])
    done = np.array(run_bucketed(clean, (x_np, y_np), size))  # a writable copy
    count = np.ones(n, np.int32)
    x_out = x_np.copy()
    sides = jnp.asarray(sides)
    eps = jnp.asarray(eps, x.dtype)
    for r in range(restarts):
        idx = np.flatnonzero(~done)
        if not idx.size:
            break
        rr = jnp.uint32(r)
        x_best, margin, value, fooled = x_np.copy(), *(np.zeros(n, d) for d in (
            x_np.dtype, x_np.dtype, bool))
        x_best[idx], margin[idx], value[idx], fooled[idx] = call(_start_chunk, idx, (rr, eps))
        count[idx] += 1
        t0 = 0
        for t1 in segments:
            live = idx[margin[idx] > 0]
            if not live.size:
                break
            shared = (rr, eps, sides, jnp.int32(t0), jnp.int32(t1))
            x_best[live], margin[live], value[live], fooled[live], count[live] = call(
                _segment_chunk, live, shared, x_best[live], margin[live], value[live],
                fooled[live], count[live])
            t0 = t1
        newly = idx[fooled[idx]]
        x_out[newly] = x_best[newly]
        done[newly] = True
    return jnp.asarray(x_out), jnp.asarray(count)


def square_with_queries(logits_fn: LogitsFn, x: Array, y: Array, *, eps, norm: str = "linf",
                        queries: int = 5000, p_init: float = 0.8, restarts: int = 1,
                        targeted: bool = False, loss: str | None = None,
                        bounds: Bounds = (0.0, 1.0), key: Array | None = None,
                        chunk: int | None = None,
                        packed: bool | None = None) -> tuple[Array, Array]:
    """:func:`square`, and per example the model evaluations it was charged for (the clean
    one, then per restart x_0 and each iteration while it was not yet fooled).

    ``packed``: run the iterations in segments from the host, re-packing the examples not
    yet fooled between segments (:func:`_attack_packed`), or as one program per chunk
    (:func:`_attack`); ``None``: packed unless called inside a caller's jit / vmap. Both
    give the same result."""
    check_args(eps, bounds, norm, norms=NORMS)
    if queries < 1:
        raise ValueError(f"queries must be >= 1, got {queries}")
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    if not 0.0 < p_init <= 1.0:
        raise ValueError(f"p_init must be in (0, 1], got {p_init}")
    loss = ("ce" if targeted else "margin") if loss is None else loss
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; use one of {LOSSES}")
    x = jnp.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"square attacks images (N, H, W, C), got shape {x.shape}")
    check_inputs(x, y, bounds)
    eps = jnp.asarray(finite_eps(eps, x, norm, bounds), x.dtype)  # one aval: no recompiles
    bounds = tuple(float(b) for b in bounds)
    sides = jnp.asarray(window_sides(queries, p_init, x.shape[1:], norm))
    keys = per_example_keys(key, x.shape[0])
    static = {"norm": norm, "targeted": targeted, "loss": loss, "bounds": bounds}
    fn = as_pytree_fn(logits_fn)
    if packed is None:
        packed = not any(isinstance(a, jax.core.Tracer) for a in (x, y, eps, keys))
    if packed:
        return _attack_packed(fn, x, y, keys, eps, sides, bucket_limit(chunk, x, CPU_CHUNK),
                              restarts=restarts, segments=segment_ends(queries), **static)
    attack = functools.partial(_attack, fn, eps=eps, sides=sides, restarts=restarts, **static)
    return run_chunked(attack, (x, jnp.asarray(y), keys), chunk_size(chunk, x, CPU_CHUNK))


def square(logits_fn: LogitsFn, x: Array, y: Array, *, eps, norm: str = "linf",
           queries: int = 5000, p_init: float = 0.8, restarts: int = 1,
           targeted: bool = False, loss: str | None = None, bounds: Bounds = (0.0, 1.0),
           key: Array | None = None, chunk: int | None = None) -> Array:
    """Square Attack (score-based black box, linf or l2; see the module docstring).

    ``queries``: iterations per restart (each one model evaluation). ``loss``: "margin"
    or "ce"; ``None`` is the reference's choice, margin untargeted and CE targeted.
    ``y``: true labels, or the targets when ``targeted``. Returns, per example, the
    first fooling point found (inside the eps-ball and the bounds), else x itself.
    ``key``: one key for the batch or one per example; results do not depend on
    ``chunk``."""
    x_adv, _ = square_with_queries(logits_fn, x, y, eps=eps, norm=norm, queries=queries,
                                   p_init=p_init, restarts=restarts, targeted=targeted,
                                   loss=loss, bounds=bounds, key=key, chunk=chunk)
    return x_adv
