"""Training: a pure jitted step, an epoch as one ``lax.scan``, and S models at once.

A *run* trains ``S`` models side by side; each model has its own seed (init and data
order) and its own regularizer weight. The whole per-model train state is one pytree with
a leading axis of size S, and one jitted epoch function, ``vmap``-ed over that axis, does
every model's epoch in one call. A single model is simply S = 1, and model ``i`` of a
run equals the same seed trained alone (tests/nets/test_train.py).

The datasets fit on the device, so every step gathers its batch there from one
permutation per epoch: no host round trip per step. The epoch is a Python loop of one
jitted step (asynchronous dispatch) or a ``lax.scan`` of the same step
(``TrainSpec.loop``, see :class:`EpochFn`).

On several devices the models and their batches are split over a 2-D mesh
``("models", "data")`` (:func:`model_mesh`): S models on D devices take ``gcd(S, D)``
devices along ``models`` and the rest along ``data``, where every model's batch is split
(data parallelism: XLA partitions the step along the batch and all-reduces the
gradients). 1 model on 4 devices is a (1, 4) mesh, 2 models a (2, 2) one; the numbers
are those of one device up to float rounding (tests/nets/test_sharding.py).

Adversarial training (PGD-AT, TRADES; :mod:`nets.adversarial`) is a choice of the
training loss (``TrainSpec.adversarial``): the inner maximization runs inside the same
jitted, vmapped step, with its randomness from each model's key and step count.

A :class:`StepTracker` (``fit(..., step_tracker=...)``) keeps a pytree of its own,
``state["track"]``, updated inside the jitted step right after the optimizer update from
the old and new params (no extra pass over the data), e.g. the running min/max of every
weight over training (:mod:`minmax.trajectory`). Its randomness is ``fold_in`` of the
model's key with its own stream and the step count (:func:`track_key`): independent of
the data order and of the adversarial key. It is checkpointed with the state. A
regularizer that reads the track says so with an attribute ``uses_track = True`` and is
called ``regularizer(params, track)``; plain ones are called ``regularizer(params)``.

A regularizer may return a vector of R penalties; then each model's ``reg_weight`` is a
vector of R weights (``reg_weights`` of shape (S, R)) and the loss adds their dot product,
so models with different penalties (one per reading, say) share one vmapped run.

State layout (a plain dict, big_vision style)::

    {"params": ..., "opt_state": ..., "step": int32, "key": uint32[2],
     "reg_weight": f32 or f32[R], "track": ... (only with a step tracker)}
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from nets.adversarial import Adversarial
from nets.adversarial import loss as adversarial_loss
from nets.adversarial import step_key as adversarial_step_key
from nets.checkpoint import Checkpointer
from nets.data import Dataset
from nets.distributed import fetch
from nets.evaluate import accuracy, placed
from nets.models import Net, init_params
from nets.sharding import data_devices, model_mesh  # noqa: F401  (re-exported: train.model_mesh)
from nets.stream import batches as host_batches
from nets.xla import compiler_options

Array = jax.Array
State = dict[str, Any]
Regularizer = Callable[..., Array]  # params (, track) -> penalty (scalar or (R,))

# Folded into a model's key to get the tracker's randomness (the data order folds the
# epoch into the same key, the adversarial step folds nets.adversarial's own stream).
_TRACK_STREAM = 0x7E4C


class StepTracker(Protocol):
    """Per-model state carried through training, updated after every optimizer step.

    ``init(params, key)`` gives the initial track (a pytree) from the initial params;
    ``update(track, old_params, new_params, key)`` the next one. Both are traced inside
    the jitted (vmapped) step, so they must be pure and jittable. The keys come from
    :func:`track_key`.
    """

    def init(self, params: Any, key: Array) -> Any: ...

    def update(self, track: Any, old_params: Any, new_params: Any, key: Array) -> Any: ...


def track_key(key: Array, step: Array | int) -> Array:
    """The tracker key after ``step`` optimizer steps: ``fold_in(fold_in(key, stream),
    step)`` (``step = 0``: the init), from the model's key in ``state["key"]``."""
    return jax.random.fold_in(jax.random.fold_in(key, _TRACK_STREAM), step)


def uses_track(regularizer: Regularizer | None) -> bool:
    """Whether ``regularizer`` is called ``regularizer(params, track)``."""
    return bool(getattr(regularizer, "uses_track", False))


def check_tracker(regularizer: Regularizer | None, step_tracker: StepTracker | None) -> bool:
    """:func:`uses_track`, or a ``ValueError`` when the regularizer reads a track that no
    ``step_tracker`` makes."""
    if uses_track(regularizer) and step_tracker is None:
        raise ValueError("this regularizer reads the track (uses_track); pass the "
                         "step_tracker that makes it")
    return uses_track(regularizer)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """What defines the optimization (everything except which models: seeds, weights)."""

    epochs: int = 15
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    eval_every: int = 1
    checkpoint_every: int = 1
    # "auto": "scan" (resolve_loop); or either by name
    loop: str = "auto"
    # keep the train set in host memory and feed prefetched batches (one too large for
    # the device; nets.stream): the same batches, so the same numbers
    host_data: bool = False
    # Adversarial training (nets.adversarial): "none" | "pgd" (Madry et al. 2018) |
    # "trades" (Zhang et al. 2019), Linf, inputs in [0, 1]. eps 0.1 by default, not
    # MNIST's 0.3: the digits are 8x8 scans with 17 grey levels (steps of 1/16) upsampled
    # to 28x28, and already at 0.2 a PGD-AT LeNet-5 keeps 0.89 clean but only 0.2 robust
    # accuracy (measured; see configs/adversarial.py).
    adversarial: str = "none"
    adv_eps: float = 0.1
    adv_steps: int = 7
    adv_step_size: float = 0.0  # 0: 2.5 * adv_eps / adv_steps
    trades_beta: float = 6.0
    adv_warmup: int = 0  # epochs over which adv_eps ramps up linearly from ~0


# name -> optax factory; its arguments are the optimizer's hyperparameters (TrainSpec fields).
_FACTORIES: dict[str, Callable[..., optax.GradientTransformation]] = {
    "adam": lambda learning_rate: optax.adam(learning_rate),
    "adamw": lambda learning_rate, weight_decay: optax.adamw(learning_rate,
                                                             weight_decay=weight_decay),
    "sgd": lambda learning_rate: optax.sgd(learning_rate),
    "momentum": lambda learning_rate, momentum: optax.sgd(learning_rate, momentum=momentum),
}
OPTIMIZERS = tuple(_FACTORIES)


def hyperparameters(spec: TrainSpec) -> tuple[str, ...]:
    """The TrainSpec fields the optimizer reads, e.g. ``("learning_rate", "momentum")``."""
    return tuple(inspect.signature(_FACTORIES[spec.optimizer]).parameters)


def make_optimizer(spec: TrainSpec) -> optax.GradientTransformation:
    """An optax optimizer by name: adam | adamw | sgd | momentum (SGD with momentum).

    Built with ``optax.inject_hyperparams``: the hyperparameters live in the optimizer
    state, so S stacked models can each have their own learning rate (a vmapped sweep,
    see :func:`init_states`) and still share one compiled step.
    """
    if spec.optimizer not in _FACTORIES:
        raise ValueError(f"unknown optimizer {spec.optimizer!r}; choose one of {OPTIMIZERS}")
    factory = _FACTORIES[spec.optimizer]
    return optax.inject_hyperparams(factory)(
        **{name: getattr(spec, name) for name in hyperparameters(spec)})


def cross_entropy(logits: Array, labels: Array) -> Array:
    """Mean softmax cross-entropy with integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def init_state(
    net: Net,
    optimizer: optax.GradientTransformation,
    key: Array,
    input_shape: tuple[int, ...],
    reg_weight: Array | float = 0.0,
    hparams: dict[str, Array | float] | None = None,
    step_tracker: StepTracker | None = None,
) -> State:
    """The train state of one model from ``PRNGKey(seed)``: the key fixes both the init
    and the data order. ``hparams`` overrides optimizer hyperparameters of this model
    (e.g. ``{"learning_rate": 3e-3}``; the optimizer must come from :func:`make_optimizer`).
    With ``step_tracker`` the state holds ``"track"``, its ``init`` of the params.
    """
    init_key, data_key = jax.random.split(key)
    params = init_params(net, init_key, input_shape)
    opt_state = optimizer.init(params)
    if hparams:
        unknown = set(hparams) - set(opt_state.hyperparams)
        if unknown:
            raise ValueError(f"the optimizer has no hyperparameter {sorted(unknown)}; "
                             f"it has {sorted(opt_state.hyperparams)}")
        opt_state.hyperparams.update(
            {k: jnp.asarray(v, opt_state.hyperparams[k].dtype) for k, v in hparams.items()})
    state = {
        "params": params,
        "opt_state": opt_state,
        "step": jnp.zeros((), jnp.int32),
        "key": data_key,
        "reg_weight": jnp.asarray(reg_weight, jnp.float32),
    }
    if step_tracker is not None:
        state["track"] = step_tracker.init(params, track_key(data_key, 0))
    return state


def init_states(
    net: Net,
    optimizer: optax.GradientTransformation,
    seeds: Sequence[int],
    input_shape: tuple[int, ...],
    reg_weights: Sequence[float] | Sequence[Sequence[float]] | None = None,
    hparams: dict[str, Sequence[float]] | None = None,
    step_tracker: StepTracker | None = None,
) -> State:
    """States of S models stacked on a leading axis (one per seed / reg weight /
    hyperparameter value: ``hparams={"learning_rate": [S values]}``). ``reg_weights``:
    S scalars, or S vectors of R weights for a regularizer returning R penalties.

    One jitted, vmapped init: Flax's init run eagerly dispatches op by op and takes
    seconds on a small CPU; compiled it is a fraction of that, with identical values.
    """
    reg_weights = [0.0] * len(seeds) if reg_weights is None else list(reg_weights)
    hparams = dict(hparams or {})
    for name, values in [("reg_weights", reg_weights), *hparams.items()]:
        if len(values) != len(seeds):
            raise ValueError(f"{len(seeds)} seeds but {len(values)} {name}")
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    make = jax.vmap(lambda k, w, h: init_state(net, optimizer, k, input_shape, w, h,
                                               step_tracker))
    per_model = {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}
    return jax.jit(make)(keys, jnp.asarray(reg_weights, jnp.float32), per_model)


def make_train_step(
    net: Net, optimizer: optax.GradientTransformation, regularizer: Regularizer | None = None,
    adversarial: Adversarial | None = None, step_tracker: StepTracker | None = None,
) -> Callable[[State, Array, Array], tuple[State, dict[str, Array]]]:
    """One optimization step of one model: loss = CE + reg_weight * regularizer(params)
    (a dot product for vector penalties; ``regularizer(params, track)`` when it
    ``uses_track``), where CE is the objective of ``adversarial`` (see
    :func:`nets.adversarial.loss`; plain CE by default). Metric ``ce`` is that
    objective. With ``step_tracker``, ``state["track"]`` is updated after the optimizer
    update from the old and new params, with key ``track_key(state["key"], step + 1)``."""
    adv = adversarial or Adversarial()
    with_track = check_tracker(regularizer, step_tracker)

    def apply(params, images):
        return net.apply({"params": params}, images)

    def weighted(reg_weight, reg):
        term = reg_weight * reg
        return term.sum() if term.ndim else term

    def loss_fn(params, images, labels, reg_weight, key, eps, track):
        if adv.method == "none":  # exactly the standard step (no key use)
            ce = cross_entropy(apply(params, images), labels)
        else:
            ce = adversarial_loss(apply, params, images, labels, key, adv, eps)
        if regularizer is None:
            reg = jnp.zeros(())
        else:
            reg = regularizer(params, track) if with_track else regularizer(params)
        return ce + weighted(reg_weight, reg), (ce, reg)

    def step(state: State, images: Array, labels: Array):
        key = None if adv.method == "none" else adversarial_step_key(state["key"], state["step"])
        grads, (ce, reg) = jax.grad(loss_fn, has_aux=True)(
            state["params"], images, labels, state["reg_weight"], key,
            adv.eps_at(state["step"]), state.get("track"))
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        new = dict(state, params=params, opt_state=opt_state, step=state["step"] + 1)
        if step_tracker is not None:
            new["track"] = step_tracker.update(state["track"], state["params"], params,
                                               track_key(state["key"], state["step"] + 1))
        return new, {"loss": ce + weighted(state["reg_weight"], reg), "ce": ce, "reg": reg}

    return step


LOOPS = ("auto", "python", "scan")


def resolve_loop(loop: str) -> str:
    """``"python"`` or ``"scan"`` for ``TrainSpec.loop``: ``"auto"`` is ``"scan"`` on every
    backend (measured faster on the CPU too, with the same numbers, see :class:`EpochFn`;
    on an accelerator it saves one host dispatch per step). An unknown name is one
    ``ValueError``."""
    if loop not in LOOPS:
        raise ValueError(f"unknown train loop {loop!r}; choose one of {LOOPS}")
    return "scan" if loop == "auto" else loop


class EpochFn:
    """``(states, images, labels, epoch) -> (states, per-step metrics)`` for S models.

    Each model shuffles with ``fold_in(its key, epoch)`` and drops the last partial batch;
    the metrics have shape (S, steps_per_epoch). Both loops run the same jitted step,
    ``one_step_at(states, images, labels, order, i)``: gather step ``i``'s (S, B) batch
    from the device-resident data, then one train step ``vmap``-ed over the S models.
    ``loop="python"`` calls it from a Python loop, with the state buffers donated;
    dispatch is asynchronous, so the host only waits at the end of the epoch.
    ``loop="scan"`` runs the epoch as one jitted ``lax.scan`` of it over the step
    indices. ``loop="auto"`` (the default) is the scan (:func:`resolve_loop`): on an
    accelerator it saves one host dispatch per step, and on the CPU it measured 7-9%
    faster with bit-identical parameters (LeNet-5, digits, batch 64, the quiet 2-core
    machine, median of 8 epochs side by side, loop vs scan: 97 vs 90 ms for 1 model, 499
    vs 457 ms for 4; 3 seeds x 3 epochs of ``fit`` with compilation 6.7 vs 5.9 s). Inside
    a compiled loop XLA's own convolution gradients were several times slower, which
    ``nets.conv`` avoids.

    With ``mesh`` (axes ``models`` x ``data``, from :func:`model_mesh`) the step is data
    parallel: the gathered (S, B, ...) batch is constrained to ``P("models", "data")``
    (models split over the first axis, each model's batch over the second) and the new
    states to ``P("models")``, so XLA partitions the forward and backward passes along
    the batch and all-reduces the gradients over ``data``. ``B`` must be divisible by the
    mesh's ``data`` size (:func:`model_mesh` makes it so). Without ``mesh`` nothing is
    constrained: the step runs where its inputs are.
    """

    def __init__(self, net: Net, optimizer: optax.GradientTransformation, batch_size: int,
                 regularizer: Regularizer | None = None, loop: str = "auto",
                 adversarial: Adversarial | None = None,
                 step_tracker: StepTracker | None = None, mesh: Mesh | None = None):
        self.batch_size, self.loop = batch_size, resolve_loop(loop)
        if mesh is not None and batch_size % mesh.shape["data"]:
            raise ValueError(f"batch size {batch_size} is not divisible by the mesh's "
                             f"{mesh.shape['data']} data devices; build the mesh with "
                             f"model_mesh(num_models, batch_size)")
        step = make_train_step(net, optimizer, regularizer, adversarial, step_tracker)

        def constrain(tree, spec):
            if mesh is None:
                return tree
            return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, spec))

        def order(key, epoch, n):  # (steps, batch) indices of one model's epoch
            steps = n // batch_size
            perm = jax.random.permutation(jax.random.fold_in(key, epoch), n)
            return perm[: steps * batch_size].reshape(steps, batch_size)

        orders = jax.vmap(order, in_axes=(0, None, None))  # (S, steps, batch)

        def one_step_at(states, images, labels, order, i):
            idx = jax.lax.dynamic_index_in_dim(order, i, axis=1, keepdims=False)  # (S, B)
            batch = constrain((images[idx], labels[idx]), P("models", "data"))
            states, metrics = jax.vmap(step)(states, *batch)
            return constrain((states, metrics), P("models"))

        def one_epoch(states, images, labels, epoch):
            order = orders(states["key"], epoch, images.shape[0])
            states, metrics = jax.lax.scan(
                lambda st, i: one_step_at(st, images, labels, order, i), states,
                jnp.arange(order.shape[1]))
            return states, jax.tree.map(lambda m: jnp.swapaxes(m, 0, 1), metrics)

        self._order = jax.jit(orders, static_argnums=2)
        options = compiler_options()
        self._step = jax.jit(one_step_at, donate_argnums=0, compiler_options=options)
        self._epoch = jax.jit(one_epoch, donate_argnums=0, compiler_options=options)

        def fed_step(states, images, labels):  # an (S, B, ...) batch sent from the host
            batch = constrain((images, labels), P("models", "data"))
            states, metrics = jax.vmap(step)(states, *batch)
            return constrain((states, metrics), P("models"))

        self._fed_step = jax.jit(fed_step, donate_argnums=0, compiler_options=options)
        self.mesh = mesh

    def __call__(self, states: State, images: Array, labels: Array, epoch: int):
        if self.loop == "scan":
            return self._epoch(states, images, labels, epoch)
        order = self._order(states["key"], epoch, images.shape[0])
        metrics = []
        for i in range(order.shape[1]):
            states, m = self._step(states, images, labels, order, i)
            metrics.append(m)
        return states, jax.tree.map(lambda *ms: jnp.stack(ms, axis=1), *metrics)

    def from_host(self, states: State, train: Dataset, epoch: int, prefetch: int = 2):
        """One epoch over a dataset kept on the host (one too large for the device): the
        batches of ``__call__``, gathered on the host and sent ``prefetch`` batches ahead
        (:func:`nets.stream.batches`), each model's in the order of its key."""
        metrics = []
        for images, labels in host_batches(train, self.batch_size, states["key"], epoch=epoch,
                                           prefetch=prefetch, mesh=self.mesh):
            states, m = self._fed_step(states, images, labels)
            metrics.append(m)
        return states, jax.tree.map(lambda *ms: jnp.stack(ms, axis=1), *metrics)

    def _cache_size(self) -> int:
        """Compiled variants of the epoch's train step (1 after any number of epochs)."""
        return (self._epoch if self.loop == "scan" else self._step)._cache_size()


def make_epoch_fn(
    net: Net,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    regularizer: Regularizer | None = None,
    loop: str = "auto",
    adversarial: Adversarial | None = None,
    step_tracker: StepTracker | None = None,
    mesh: Mesh | None = None,
) -> EpochFn:
    """The epoch function of S stacked models (see :class:`EpochFn`)."""
    return EpochFn(net, optimizer, batch_size, regularizer, loop, adversarial, step_tracker,
                   mesh)


def check_finite(metrics: dict[str, np.ndarray], epoch: int, seeds: Sequence[int],
                 saved: Callable[[], str] = lambda: "the last checkpoint is intact") -> None:
    """Raise :class:`NonFiniteLossError` naming the first bad step (per-step losses);
    ``saved()`` says what the checkpoint folder holds (asked only when raising)."""
    loss = np.asarray(metrics["loss"])  # (S, steps)
    bad = ~np.isfinite(loss)
    if not bad.any():
        return
    model, batch = np.argwhere(bad)[np.argmin(np.argwhere(bad)[:, 1])]
    steps = loss.shape[1]
    raise NonFiniteLossError(
        f"non-finite loss {loss[model, batch]} at step {epoch * steps + batch} "
        f"(epoch {epoch}, batch {batch}) of model {model} (seed {seeds[model]}). "
        f"Nothing from this epoch was saved; {saved()}. Lower "
        f"train.learning_rate (or the regularizer weight), or check the data for NaNs."
    )


def _saved(ckpt: Checkpointer | None) -> str:
    """What a run can resume from, for the non-finite-loss message."""
    if ckpt is None:
        return "no checkpoints are kept (no checkpoint folder)"
    latest = ckpt.latest_step()
    if latest is None:
        return "no checkpoint was written yet"
    return f"the last checkpoint (epoch {latest}) is intact"


def fit(
    net: Net,
    train: Dataset,
    test: Dataset | None,
    spec: TrainSpec,
    seeds: Sequence[int] = (0,),
    *,
    reg_weights: Sequence[float] | Sequence[Sequence[float]] | None = None,
    hparams: dict[str, Sequence[float]] | None = None,
    regularizer: Regularizer | None = None,
    step_tracker: StepTracker | None = None,
    checkpoint_dir: str | None = None,
    log: Callable[[dict], None] | None = None,
    on_epoch: Callable[[int, State], dict | None] | None = None,
) -> tuple[State, list[dict]]:
    """Train ``len(seeds)`` models side by side; returns (stacked states, history).

    ``spec.adversarial`` picks the training loss: standard, PGD-AT or TRADES
    (:mod:`nets.adversarial`). Model ``i`` has seed ``seeds[i]``, regularizer weight
    ``reg_weights[i]`` and, for each ``name`` in ``hparams``, optimizer hyperparameter ``hparams[name][i]`` (else the
    spec's value): a learning-rate x seed sweep is one vmapped run.

    With ``step_tracker`` every model's state carries ``"track"`` (see
    :class:`StepTracker`), which ``on_epoch`` can read and the checkpoints keep.

    The run uses every device it can: the mesh ``model_mesh(len(seeds),
    spec.batch_size)`` splits the models over ``gcd(S, D)`` devices and every model's
    batch over the rest (data parallelism; a batch size the remaining devices do not
    divide uses the largest count that does). The numbers are those of one device up to
    float rounding.

    With ``spec.host_data`` the train set stays in host memory (one too large for the device)
    and every step's batch is gathered there and sent ahead (:meth:`EpochFn.from_host`):
    the same batches, so the same numbers up to float rounding.

    Each history record is ``{"epoch", "step", "train_loss": [S], "test_accuracy": [S],
    ...}`` plus whatever ``on_epoch(epoch, states)`` returns (e.g. weight statistics).
    Every record is passed to ``log`` as it is made. With ``checkpoint_dir`` the state
    and history are saved every ``spec.checkpoint_every`` epochs and at the end, and a
    run finding a checkpoint there resumes from it (re-logging the restored history), so
    an interrupted run ends with the same parameters as an uninterrupted one.
    """
    for name, data in (("train", train), ("test", test)):
        if data is None:
            continue
        labels = np.asarray(data.labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"{name} labels must be integer class indices of shape (N,), got "
                f"{labels.dtype} {labels.shape}; one-hot labels? use labels.argmax(-1)")
        if labels.shape[0] != data.images.shape[0]:
            raise ValueError(f"{name} has {data.images.shape[0]} images but "
                             f"{labels.shape[0]} labels")
    if spec.epochs < 1 or spec.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {spec.epochs}, {spec.batch_size}")
    adversarial = Adversarial.of(spec, train.images.shape[0] // spec.batch_size)
    adversarial.check()
    if train.images.shape[0] < spec.batch_size:
        raise ValueError(
            f"train set has {train.images.shape[0]} images, fewer than one batch of "
            f"{spec.batch_size}; lower train.batch_size"
        )
    optimizer = make_optimizer(spec)
    check_tracker(regularizer, step_tracker)  # before any work
    resolve_loop(spec.loop)
    states = init_states(net, optimizer, seeds, train.images.shape[1:], reg_weights, hparams,
                         step_tracker)
    history: list[dict] = []
    start = 0
    ckpt = Checkpointer(checkpoint_dir) if checkpoint_dir else None
    if ckpt is not None and ckpt.latest_step() is not None:
        states, history, last = ckpt.restore_intact(states)
        start = last + 1
    log = log or (lambda record: None)
    for record in history:
        log(record)

    mesh = model_mesh(len(seeds), spec.batch_size)
    epoch_fn = make_epoch_fn(net, optimizer, spec.batch_size, regularizer, spec.loop,
                             adversarial, step_tracker, mesh)
    if spec.host_data:  # the train set stays on the host, fed batch by batch (nets.stream)
        states, _ = shard_models(states, (), mesh)
        run_epoch = functools.partial(epoch_fn.from_host, train=train)
    else:
        states, (images, labels) = shard_models(states, (train.images, train.labels), mesh)
        run_epoch = functools.partial(epoch_fn, images=images, labels=labels)
    test = placed(test) if test is not None else None  # on the devices once, not every eval
    try:
        for epoch in range(start, spec.epochs):
            states, metrics = run_epoch(states, epoch=epoch)
            metrics = fetch(metrics)
            check_finite(metrics, epoch, seeds, lambda: _saved(ckpt))
            record = {
                "epoch": epoch,
                "step": int(fetch(states["step"])[0]),
                "train_loss": np.asarray(metrics["loss"]).mean(axis=1).tolist(),
            }
            last_epoch = epoch == spec.epochs - 1
            if test is not None and (last_epoch or (epoch + 1) % spec.eval_every == 0):
                record["test_accuracy"] = accuracy(net, states["params"], test).tolist()
            if on_epoch is not None:
                record.update(on_epoch(epoch, states) or {})
            history.append(record)
            log(record)
            if ckpt is not None and (last_epoch or (epoch + 1) % spec.checkpoint_every == 0):
                ckpt.save(epoch, states, history)
    finally:  # also on Ctrl-C or an error: let a save in flight finish, then close
        if ckpt is not None:
            ckpt.close()
    return states, history


def shard_models(states: State, data: Any, mesh: Mesh | None = None) -> tuple[State, Any]:
    """Place the S stacked models split over the mesh's ``models`` axis (replicated along
    ``data``), the data replicated on every device of the mesh.

    The jitted, vmapped epoch then runs SPMD-partitioned along the model axis, and, with
    the same mesh passed to :class:`EpochFn`, every model's batch along ``data``: with
    a (m, d) mesh each group of d devices trains S/m models, each device a B/d part of
    their batches, with no change to the numbers beyond float rounding (tests/nets/
    test_sharding.py). On one device this is a plain transfer. With several processes
    (nets.distributed) the mesh spans every process's devices; each process holds the
    same states and data, and keeps its devices' part.
    """
    num_models = jax.tree.leaves(states)[0].shape[0]
    mesh = model_mesh(num_models) if mesh is None else mesh
    if jax.process_count() > 1:  # host values, identical on every process
        states, data = jax.device_get((states, data))
    split, whole = NamedSharding(mesh, P("models")), NamedSharding(mesh, P())
    return jax.device_put(states, split), jax.device_put(data, whole)


def select(states: State, i: int) -> State:
    """Model ``i`` of a stacked run."""
    return jax.tree.map(lambda x: x[i], states)
