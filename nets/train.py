"""Training: a pure jitted step, an epoch as one ``lax.scan``, and S models at once.

A *run* trains ``S`` models side by side; each model has its own seed (init and data
order) and its own regularizer weight. The whole per-model train state is one pytree with
a leading axis of size S, and one jitted epoch function, ``vmap``-ed over that axis, does
every model's epoch in one call. A single model is simply S = 1, and model ``i`` of a
run equals the same seed trained alone (tests/nets/test_train.py).

Why an epoch is one scan: the datasets fit on the device, so a ``lax.scan`` over the
shuffled batches runs the epoch with no host round trip or per-step dispatch, which is
where a per-step Python loop loses to PyTorch on a small CPU (benchmarks/train.py).

State layout (a plain dict, big_vision style)::

    {"params": ..., "opt_state": ..., "step": int32, "key": uint32[2], "reg_weight": f32}
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from nets.checkpoint import Checkpointer
from nets.data import Dataset
from nets.evaluate import accuracy
from nets.models import Net, init_params

Array = jax.Array
State = dict[str, Any]
Regularizer = Callable[[Any], Array]  # params -> scalar penalty


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


OPTIMIZERS = ("adam", "adamw", "sgd", "momentum")


def make_optimizer(spec: TrainSpec) -> optax.GradientTransformation:
    """An optax optimizer by name: adam | adamw | sgd | momentum (SGD with momentum)."""
    lr = spec.learning_rate
    if spec.optimizer == "adam":
        return optax.adam(lr)
    if spec.optimizer == "adamw":
        return optax.adamw(lr, weight_decay=spec.weight_decay)
    if spec.optimizer == "sgd":
        return optax.sgd(lr)
    if spec.optimizer == "momentum":
        return optax.sgd(lr, momentum=spec.momentum)
    raise ValueError(f"unknown optimizer {spec.optimizer!r}; choose one of {OPTIMIZERS}")


def cross_entropy(logits: Array, labels: Array) -> Array:
    """Mean softmax cross-entropy with integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def init_state(
    net: Net,
    optimizer: optax.GradientTransformation,
    key: Array,
    input_shape: tuple[int, ...],
    reg_weight: Array | float = 0.0,
) -> State:
    """The train state of one model from ``PRNGKey(seed)``: the key fixes both the init
    and the data order."""
    init_key, data_key = jax.random.split(key)
    params = init_params(net, init_key, input_shape)
    return {
        "params": params,
        "opt_state": optimizer.init(params),
        "step": jnp.zeros((), jnp.int32),
        "key": data_key,
        "reg_weight": jnp.asarray(reg_weight, jnp.float32),
    }


def init_states(
    net: Net,
    optimizer: optax.GradientTransformation,
    seeds: Sequence[int],
    input_shape: tuple[int, ...],
    reg_weights: Sequence[float] | None = None,
) -> State:
    """States of S models stacked on a leading axis (one per seed / reg weight).

    One jitted, vmapped init: Flax's init run eagerly dispatches op by op and takes
    seconds on a small CPU; compiled it is a fraction of that, with identical values.
    """
    reg_weights = [0.0] * len(seeds) if reg_weights is None else list(reg_weights)
    if len(reg_weights) != len(seeds):
        raise ValueError(f"{len(seeds)} seeds but {len(reg_weights)} reg_weights")
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    make = jax.vmap(lambda k, w: init_state(net, optimizer, k, input_shape, w))
    return jax.jit(make)(keys, jnp.asarray(reg_weights, jnp.float32))


def make_train_step(
    net: Net, optimizer: optax.GradientTransformation, regularizer: Regularizer | None = None
) -> Callable[[State, Array, Array], tuple[State, dict[str, Array]]]:
    """One optimization step of one model: loss = CE + reg_weight * regularizer(params)."""

    def loss_fn(params, images, labels, reg_weight):
        ce = cross_entropy(net.apply({"params": params}, images), labels)
        reg = regularizer(params) if regularizer is not None else jnp.zeros(())
        return ce + reg_weight * reg, (ce, reg)

    def step(state: State, images: Array, labels: Array):
        grads, (ce, reg) = jax.grad(loss_fn, has_aux=True)(
            state["params"], images, labels, state["reg_weight"]
        )
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        new = dict(state, params=optax.apply_updates(state["params"], updates),
                   opt_state=opt_state, step=state["step"] + 1)
        return new, {"loss": ce + state["reg_weight"] * reg, "ce": ce, "reg": reg}

    return step


def make_epoch_fn(
    net: Net,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    regularizer: Regularizer | None = None,
) -> Callable[[State, Array, Array, Array], tuple[State, dict[str, Array]]]:
    """Jitted ``(states, images, labels, epoch) -> (states, per-step metrics)`` for S models.

    Each model shuffles with ``fold_in(its key, epoch)`` and drops the last partial batch;
    the metrics have shape (S, steps_per_epoch). The state buffers are donated.
    """
    step = make_train_step(net, optimizer, regularizer)

    def one_model(state, images, labels, epoch):
        n = images.shape[0]
        steps = n // batch_size
        perm = jax.random.permutation(jax.random.fold_in(state["key"], epoch), n)
        batches = perm[: steps * batch_size].reshape(steps, batch_size)

        def body(st, idx):
            return step(st, images[idx], labels[idx])

        return jax.lax.scan(body, state, batches)

    return jax.jit(jax.vmap(one_model, in_axes=(0, None, None, None)), donate_argnums=0)


def check_finite(metrics: dict[str, np.ndarray], epoch: int, seeds: Sequence[int]) -> None:
    """Raise :class:`NonFiniteLossError` naming the first bad step (per-step losses)."""
    loss = np.asarray(metrics["loss"])  # (S, steps)
    bad = ~np.isfinite(loss)
    if not bad.any():
        return
    model, batch = np.argwhere(bad)[np.argmin(np.argwhere(bad)[:, 1])]
    steps = loss.shape[1]
    raise NonFiniteLossError(
        f"non-finite loss {loss[model, batch]} at step {epoch * steps + batch} "
        f"(epoch {epoch}, batch {batch}) of model {model} (seed {seeds[model]}). "
        f"Nothing from this epoch was saved; the last checkpoint is intact. Lower "
        f"train.learning_rate (or the regularizer weight), or check the data for NaNs."
    )


def fit(
    net: Net,
    train: Dataset,
    test: Dataset | None,
    spec: TrainSpec,
    seeds: Sequence[int] = (0,),
    *,
    reg_weights: Sequence[float] | None = None,
    regularizer: Regularizer | None = None,
    checkpoint_dir: str | None = None,
    log: Callable[[dict], None] | None = None,
    on_epoch: Callable[[int, State], dict | None] | None = None,
    progress: bool = True,
) -> tuple[State, list[dict]]:
    """Train ``len(seeds)`` models side by side; returns (stacked states, history).

    Each history record is ``{"epoch", "step", "train_loss": [S], "test_accuracy": [S],
    ...}`` plus whatever ``on_epoch(epoch, states)`` returns (e.g. weight statistics).
    Every record is passed to ``log`` as it is made. With ``checkpoint_dir`` the state
    and history are saved every ``spec.checkpoint_every`` epochs and at the end, and a
    run finding a checkpoint there resumes from it (re-logging the restored history), so
    an interrupted run ends with the same parameters as an uninterrupted one.
    """
    if spec.epochs < 1 or spec.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {spec.epochs}, {spec.batch_size}")
    if train.images.shape[0] < spec.batch_size:
        raise ValueError(
            f"train set has {train.images.shape[0]} images, fewer than one batch of "
            f"{spec.batch_size}; lower train.batch_size"
        )
    optimizer = make_optimizer(spec)
    states = init_states(net, optimizer, seeds, train.images.shape[1:], reg_weights)
    history: list[dict] = []
    start = 0
    ckpt = Checkpointer(checkpoint_dir) if checkpoint_dir else None
    if ckpt is not None and ckpt.latest_step() is not None:
        states, history, last = ckpt.restore(states)
        start = last + 1
    log = log or (lambda record: None)
    for record in history:
        log(record)

    epoch_fn = make_epoch_fn(net, optimizer, spec.batch_size, regularizer)
    states, (images, labels) = shard_models(states, (train.images, train.labels))
    bar = tqdm(total=spec.epochs, initial=start, desc="train", unit="epoch", disable=not progress)
    for epoch in range(start, spec.epochs):
        states, metrics = epoch_fn(states, images, labels, epoch)
        metrics = jax.device_get(metrics)
        check_finite(metrics, epoch, seeds)
        record = {
            "epoch": epoch,
            "step": int(np.asarray(states["step"])[0]),
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
        bar.set_postfix(loss=f"{np.mean(record['train_loss']):.4f}",
                        acc=f"{np.mean(record.get('test_accuracy', np.nan)):.4f}")
        bar.update(1)
    bar.close()
    if ckpt is not None:
        ckpt.close()
    return states, history


def model_mesh(num_models: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh (axis ``models``) over as many devices as evenly divide the S models."""
    devices = list(jax.devices() if devices is None else devices)
    n = math.gcd(num_models, len(devices))
    return Mesh(np.asarray(devices[:n]), ("models",))


def shard_models(states: State, data: Any, mesh: Mesh | None = None) -> tuple[State, Any]:
    """Place the S stacked models split over the devices, the data replicated on each.

    The jitted, vmapped epoch then runs SPMD-partitioned along the model axis: with D
    devices each trains S/D models, with no change to the numbers (tests/nets/
    test_sharding.py). On one device this is a plain transfer.
    """
    num_models = jax.tree.leaves(states)[0].shape[0]
    mesh = model_mesh(num_models) if mesh is None else mesh
    split, whole = NamedSharding(mesh, P("models")), NamedSharding(mesh, P())
    return jax.device_put(states, split), jax.device_put(data, whole)


def select(states: State, i: int) -> State:
    """Model ``i`` of a stacked run."""
    return jax.tree.map(lambda x: x[i], states)
