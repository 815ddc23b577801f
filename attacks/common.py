"""What every input attack shares: the model as a jittable logits function, losses,
projections onto eps-balls and the valid input range.

Calling convention (cleverhans/foolbox style)::

    x_adv = attack(logits_fn, x, y, *, eps, ..., targeted=False, bounds=(0, 1), key=key)

``y`` holds the true labels (untargeted: move away from them) or the target labels
(``targeted=True``: move towards them). ``logits_fn(x) -> logits`` maps a batch to a
batch and must not mix examples. Wrap a network with :func:`model_logits_fn`: its
parameters then travel as jit *arguments*, so attacking new parameters or new data of
the same shapes reuses the compiled program instead of recompiling. ``key`` is one key
for the batch or one key per example (:func:`example_keys`); with one key per example,
example i's random start depends on its own key only, not on the batch size or on how
the batch is chunked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.tree_util import Partial

from attacks.l1 import l1_norm, project_l1_box
from attacks.split import row_mesh, split_call, splittable
from nets.models import Net

Array = jax.Array
LogitsFn = Callable[[Array], Array]
Bounds = tuple[float, float]
NORMS = ("linf", "l2")  # the gradient-sign family and DeepFool
ALL_NORMS = ("linf", "l2", "l1")  # APGD and FAB also attack in l1


@dataclasses.dataclass(frozen=True)
class _Apply:
    """Hashable ``(params, x) -> logits`` for a :class:`Net` (the static part of a Partial)."""

    net: Net

    def __call__(self, params, x: Array) -> Array:
        return self.net.apply({"params": params}, x)


def model_logits_fn(net: Net, params) -> Partial:
    """``x -> logits`` of ``net`` with ``params``, as a pytree that jit can take as an argument."""
    return Partial(_Apply(net), params)


def as_pytree_fn(logits_fn: LogitsFn) -> Partial:
    """Any callable as a ``Partial`` (a plain function becomes a leafless, static pytree)."""
    return logits_fn if isinstance(logits_fn, Partial) else Partial(logits_fn)


def attack_loss(logits: Array, y: Array, targeted: bool) -> Array:
    """Per-example loss the attack *ascends*: CE(y) untargeted, -CE(target) targeted."""
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return -ce if targeted else ce


def loss_grad(logits_fn: LogitsFn, x: Array, y: Array, targeted: bool) -> tuple[Array, Array]:
    """(per-example loss, d loss / d x); examples are independent so one grad of the sum."""

    def total(x):
        losses = attack_loss(logits_fn(x), y, targeted)
        return losses.sum(), losses

    grad, losses = jax.grad(total, has_aux=True)(x)
    return losses, grad


def success(logits: Array, y: Array, targeted: bool) -> Array:
    """Per-example success: prediction != y (untargeted) or == y (targeted)."""
    pred = logits.argmax(-1)
    return pred == y if targeted else pred != y


def l2_norm(v: Array) -> Array:
    """Per-example L2 norm, shaped (N, 1, 1, ...) for broadcasting."""
    axes = tuple(range(1, v.ndim))
    return jnp.sqrt(jnp.sum(v * v, axis=axes, keepdims=True))


def project(x_adv: Array, x: Array, eps: Array, norm: str, bounds: Bounds) -> Array:
    """Project onto the eps-ball around ``x`` (in ``norm``), then clip to ``bounds``.

    For linf, clipping keeps the ball (a box intersected with a box). For l2, clipping to
    the bounds can only shrink each coordinate's distance to ``x`` (x is inside the
    bounds), so the result stays inside the ball. For l1, "project then clip" is not the
    nearest point of the l1-ball ∩ box, so l1 uses the exact projection onto the
    intersection (Croce & Hein 2021, :func:`attacks.l1.project_l1_box`); the final clip
    only absorbs rounding.
    """
    delta = x_adv - x
    if norm == "linf":
        delta = jnp.clip(delta, -eps, eps)
    elif norm == "l2":
        n = l2_norm(delta)
        delta = delta * jnp.minimum(1.0, eps / jnp.maximum(n, 1e-12))
    elif norm == "l1":  # the exact projection onto the l1-ball ∩ box (attacks/l1.py)
        delta = project_l1_box(delta, x, _per_example(eps, x), bounds)
    else:
        raise ValueError(f"unknown norm {norm!r}; use one of {ALL_NORMS}")
    return jnp.clip(x + delta, *bounds)


def _per_example(eps, x: Array) -> Array:
    """``eps`` as a scalar or (N,): a scalar, (N,) or (N, 1, 1, ...) eps for the l1 helpers."""
    eps = jnp.asarray(eps, x.dtype)
    return eps if eps.ndim == 0 else eps.reshape(x.shape[0])


def is_key_batch(key: Array) -> bool:
    """Whether ``key`` holds one key per example: shape (N,) of typed keys
    (``jax.random.key``) or (N, 2) of raw ones (``jax.random.PRNGKey``)."""
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    return key.ndim > (0 if typed else 1)


def example_keys(key: Array, n: int) -> Array:
    """One key per example, key_i = fold_in(key, i): example i draws the same random
    numbers whatever the batch size or the chunking around it."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n, dtype=jnp.uint32))


def random_start(key: Array, x: Array, eps: Array, norm: str, bounds: Bounds) -> Array:
    """A uniform random point of the eps-ball around ``x`` (clipped to ``bounds``).

    ``key`` is one key for the batch, or one per example (:func:`is_key_batch`): then
    row i is what one key ``key[i]`` draws for the batch ``x[i:i+1]``.
    """
    if is_key_batch(key):
        eps = jnp.asarray(eps, x.dtype)
        shape = (x.shape[0],) + (1,) * (x.ndim - 1) if eps.ndim == 0 else x.shape
        eps = jnp.broadcast_to(eps, shape)  # one eps per example, mapped with its key

        def one(k, xi, ei):
            return random_start(k, xi[None], ei[None], norm, bounds)[0]

        return jax.vmap(one)(key, x, eps)
    if norm == "linf":
        delta = jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0) * eps
    elif norm == "l1":  # uniform in the l1 ball: Laplace coordinates over (||.||_1 + Exp(1))
        kd, ke = jax.random.split(key)
        lap = jax.random.laplace(kd, x.shape, x.dtype)
        extra = jax.random.exponential(ke, (x.shape[0],) + (1,) * (x.ndim - 1), x.dtype)
        delta = lap / (l1_norm(lap) + extra) * eps
    elif norm == "l2":  # uniform in the l2 ball: gaussian direction, radius eps * U^(1/d)
        kd, kr = jax.random.split(key)
        d = jax.random.normal(kd, x.shape, x.dtype)
        dim = x[0].size
        r = jax.random.uniform(kr, (x.shape[0],) + (1,) * (x.ndim - 1), x.dtype) ** (1.0 / dim)
        delta = d / jnp.maximum(l2_norm(d), 1e-12) * r * eps
    else:
        raise ValueError(f"unknown norm {norm!r}; use one of {ALL_NORMS}")
    return jnp.clip(x + delta, *bounds)  # clipping only shrinks |delta_i|: still in the ball


def normalize(g: Array, norm: str) -> Array:
    """Steepest-ascent direction of unit size: sign(g) for linf, g/||g||_2 for l2, and for
    l1 sign(g_i) e_i at the largest |g_i| (a vertex of the l1 ball; ties: the first)."""
    if norm == "linf":
        return jnp.sign(g)
    if norm == "l1":
        flat = g.reshape(g.shape[0], -1)
        top = jax.nn.one_hot(jnp.argmax(jnp.abs(flat), -1), flat.shape[1], dtype=g.dtype)
        return (top * jnp.sign(flat)).reshape(g.shape)
    return g / jnp.maximum(l2_norm(g), 1e-12)


def finite_eps(eps, x: Array, norm: str, bounds: Bounds):
    """``eps`` with inf replaced by the diameter of the input box in ``norm`` (hi - lo for
    linf, (hi - lo) sqrt(d) for l2, (hi - lo) d for l1): the same set of reachable inputs ("no constraint"),
    but finite step sizes, so eps = inf gives no inf * 0 = NaN (issue 17)."""
    lo, hi = bounds
    d = float(np.prod(x.shape[1:]))
    size = (hi - lo) * {"linf": 1.0, "l2": float(np.sqrt(d)), "l1": d}[norm]
    return jnp.where(jnp.isinf(jnp.asarray(eps)), size, eps)


def check_inputs(x: Array, y: Array, bounds: Bounds, steps: int | None = None) -> None:
    """Clear errors for a batch the attacks cannot use: labels that are not one integer
    per example, inputs outside ``bounds``, fewer than one step. Skipped when traced."""
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if isinstance(x, jax.core.Tracer) or isinstance(y, jax.core.Tracer):
        return
    y_arr = np.asarray(y)
    if y_arr.shape != (x.shape[0],) or not np.issubdtype(y_arr.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices of shape ({x.shape[0]},), got "
                         f"{y_arr.dtype} {y_arr.shape}; one-hot labels? use y.argmax(-1)")
    lo, hi = bounds
    with jax.ensure_compile_time_eval():  # concrete x closed over by a caller's jit
        x_lo, x_hi = float(jnp.min(x)), float(jnp.max(x))
    if x_lo < lo - 1e-6 or x_hi > hi + 1e-6:
        raise ValueError(f"inputs span [{x_lo:g}, {x_hi:g}], outside bounds {tuple(bounds)}; "
                         f"scale them (e.g. images / 255) or pass bounds=({x_lo:g}, {x_hi:g})")


def check_args(eps, bounds: Bounds, norm: str = "linf", norms: tuple[str, ...] = NORMS) -> None:
    """Clear errors for arguments that can be checked before tracing (``norms``: the
    norms the calling attack supports)."""
    if norm not in norms:
        raise ValueError(f"unknown norm {norm!r}; use one of {norms}")
    lo, hi = bounds
    if not lo < hi:
        raise ValueError(f"bounds must satisfy lo < hi, got {bounds}")
    try:
        e = np.asarray(eps, np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return  # traced inside jit/vmap: checked by the caller that made the grid
    if np.any(np.isnan(e) | (e < 0)):
        raise ValueError(f"eps must be >= 0 (inf allowed for l2), got {eps}")
    if norm == "linf" and np.any(np.isfinite(e) & (e > hi - lo)):
        raise ValueError(
            f"linf eps {eps} exceeds the input range {bounds}: every input would be "
            f"reachable; use eps <= {hi - lo} (or inf for an unconstrained attack)"
        )


def chunk_size(chunk: int | None, x: Array, cpu_chunk: int) -> int:
    """Examples per jitted call: ``chunk``, or ``cpu_chunk`` on CPU and all elsewhere; all
    when ``x`` is traced (inside a caller's jit / vmap the whole batch is one program)."""
    n = x.shape[0]
    if isinstance(x, jax.core.Tracer):
        return n
    if chunk is None:
        chunk = cpu_chunk if jax.default_backend() == "cpu" else n
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return min(chunk, n)


def per_example_keys(key: Array | None, n: int) -> Array:
    """One key per example: ``key`` itself if it already is one per example, else
    :func:`example_keys` of it (``None`` means ``PRNGKey(0)``). With per-example keys an
    example's randomness depends on its own key only, never on the batch or the chunks."""
    key = jax.random.PRNGKey(0) if key is None else key
    return key if is_key_batch(key) else example_keys(key, n)


def run_chunked(attack: Callable[..., Array], arrays: tuple, size: int) -> Array:
    """``attack(*arrays)`` in chunks of ``size`` rows (every array has the batch axis
    first): :func:`run_bucketed` with the last chunk padded to ``size`` too (one
    compiled program), the padded rows dropped."""
    if size >= arrays[0].shape[0]:
        return attack(*arrays)
    return run_bucketed(attack, arrays, size, min_rows=size)


# Smallest padded call of :func:`bucket_sizes`: every size is one more compile of each
# attack program (seconds on XLA:CPU), so sizes 16, 32, 64 and 128 (the CPU chunk) only.
MIN_BUCKET = 16


def bucket_sizes(n: int, size: int, min_rows: int = MIN_BUCKET) -> list[int]:
    """Rows per call for ``n`` examples in calls of at most ``size`` rows: full calls of
    ``size``, then the rest padded to the next power of two (at least ``min_rows``, at
    most ``size``). A shrinking subset (the examples still robust, the ones a loop has
    not finished) then costs about its own size, and each attack compiles at most
    log2(size / min_rows) + 1 shapes; the plain ``run_chunked`` would pad the rest up to
    ``size`` (146 robust examples in chunks of 128: 160 rows here, 256 there)."""
    if n < 1:
        return []
    full, rest = divmod(n, size)
    sizes = [size] * full
    if rest:
        sizes.append(min(size, max(min_rows, 1 << (rest - 1).bit_length())))
    return sizes


def bucket_limit(chunk: int | None, x: Array, cpu_chunk: int) -> int:
    """Most rows per call of a bucketed run (:func:`run_bucketed`): ``chunk``, or
    ``cpu_chunk`` on CPU and the whole batch elsewhere. Unlike :func:`chunk_size` it is not
    cut to the batch, so a small subset still runs in one of the few bucket shapes."""
    n = chunk_size(chunk, x, cpu_chunk)  # validates chunk
    if chunk is not None:
        return chunk
    return cpu_chunk if not isinstance(x, jax.core.Tracer) and jax.default_backend() == "cpu" \
        else n


def run_bucketed(attack: Callable[..., Array], arrays: tuple, size: int,
                 min_rows: int = MIN_BUCKET):
    """``attack(*arrays)`` in the calls of :func:`bucket_sizes` (the last one padded by
    repeating its first row; padded rows dropped). Host numpy or device arrays in, the
    attack's output pytree (rows in order) out. Inside :func:`attacks.split.rows_over`
    each call of a ``functools.partial`` has its rows split over the devices."""
    n = arrays[0].shape[0]
    if n == 0:
        return attack(*arrays)
    mesh, call = row_mesh(), attack
    if mesh is not None and splittable(attack):  # inside attacks.split.rows_over
        call = lambda *rows: split_call(attack, rows, mesh)
    out, start = [], 0
    for rows in bucket_sizes(n, size, min_rows):
        take = np.arange(start, start + rows)
        take = np.where(take < n, take, start)  # padding repeats the call's first row
        out.append(call(*(a[take] for a in arrays)))
        start += rows
    if len(out) == 1:
        return jax.tree.map(lambda a: a[:n], out[0])
    return jax.tree.map(lambda *parts: jnp.concatenate(parts)[:n], *out)


# Share of a device's free memory one call may take by XLA's own count of its buffers
# (:func:`program_bytes`); the rest is left for fragmentation and the runtime's workspace.
MEMORY_FRACTION = 0.8


def free_memory(device: jax.Device | None = None) -> int | None:
    """Free bytes of ``device`` (default: the first) from ``memory_stats()``:
    ``bytes_limit - bytes_in_use``; ``None`` where the backend reports none (XLA:CPU)."""
    stats = (device or jax.devices()[0]).memory_stats()
    if not stats or "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def program_bytes(compiled) -> int | None:
    """Device bytes a compiled program needs while it runs, by XLA's buffer assignment
    (``memory_analysis()``): arguments + outputs + temporaries - outputs aliasing
    arguments; per device for a program split over several. ``None`` where the backend
    gives no analysis. Measured on XLA:CPU for LeNet-5's PGD over 8 eps: 1.10 MB of
    temporaries per row at 32, 64 and 128 rows (linear in the rows)."""
    try:
        m = compiled.memory_analysis()
    except (NotImplementedError, jax.errors.JaxRuntimeError):
        return None
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
               - m.alias_size_in_bytes)


def rows_that_fit(bytes_per_row: float, free: int, fraction: float = MEMORY_FRACTION) -> int:
    """Rows whose ``bytes_per_row`` fit in ``fraction`` of ``free`` bytes (at least 1)."""
    return max(1, int(free * fraction // bytes_per_row))
