"""The ``som`` lens's protocol: internal codes of every layer through self-organizing maps
(Lee & Vijayan, arXiv 2205.10952), on every trained seed.

For every trained seed:

1. the evaluated test images, their PGD / FGSM versions (linf ``som.eps``) and, as the
   non-adversarial baseline, the same images with random +-eps signs
   (:func:`som.analysis.sign_noise`);
2. :func:`som.analysis.network_codes`: codes of every conv/dense layer, scaled by the
   training codes (``som.scale``), and the network's predictions (1 and 2: one compiled
   program per step, called once per seed);
3. :func:`som.analysis.map_codes`, all seeds and layers in one vmapped program: one map
   per layer trained on the training codes, BMUs of every set, the per-layer measures and
   which inputs' BMUs moved.

Shallow layers are the conv layers and deep layers the dense ones (the first and second
half of the layers when the net has only one kind). Results hold every measure per layer
and seed, and per image and seed the fraction of shallow / deep layers whose BMU an attack
moves beyond what the noise baseline moves (what the claims bootstrap over).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from attacks.common import model_logits_fn
from attacks.gradient import fgsm, pgd
from experiments.config import ConfigError, sweepable
from experiments.lens import Context
from experiments.train import protocol as train_protocol
from nets.data import Dataset
from nets.models import Net
from nets.train import select
from som import analysis
from som import codes as codes_lib
from som.codes import SCALES
from som.grid import Grid
from som.train import SOMSpec

ATTACKS = ("pgd", "fgsm", "noise")
NOISE = "noise"


@sweepable
def defaults() -> ml_collections.ConfigDict:
    """The ``train`` task's keys plus a ``som`` section."""
    c = train_protocol.defaults()
    c.task = "som"
    c.som = ml_collections.ConfigDict({
        "rows": 10,
        "cols": 10,
        "topology": "hexagonal",  # or rectangular
        "neighborhood": "gaussian",  # or bubble
        "algorithm": "batch",  # or online
        "steps": 40,  # batch: passes over the data; online: single-sample updates
        "sigma": 0.0,  # start radius; 0 = max(rows, cols) / 2
        "sigma_end": 1.0,
        "learning_rate": 0.5,  # online only
        "learning_rate_end": 0.01,
        "decay": "exponential",  # or linear, asymptotic (MiniSom's)
        "init": "pca",  # or random
        "layers": (),  # conv/dense layers to map; () = all
        "scale": "rms",  # rms | zscore (per feature) | none
        "attacks": ATTACKS,  # noise: random +-eps signs, the non-adversarial baseline
        "eps": 0.1,  # linf budget of the perturbations (inputs in [0, 1])
        "pgd_steps": 20,
        "images": 0,  # test images evaluated (clean and attacked); 0 = all
        "permutations": 20,  # label shuffles for the MI bias floor
        "chunk": 1024,  # rows per BMU / attack chunk
        "seed": 0,
    })
    return c


def som_spec(cfg: ml_collections.ConfigDict) -> SOMSpec:
    """The map spec from the config's ``som`` section (bad values are a ConfigError)."""
    try:
        grid = Grid(cfg.rows, cfg.cols, cfg.topology)
        return SOMSpec(grid, algorithm=cfg.algorithm, steps=cfg.steps,
                       neighborhood=cfg.neighborhood, sigma=cfg.sigma, sigma_end=cfg.sigma_end,
                       learning_rate=cfg.learning_rate,
                       learning_rate_end=cfg.learning_rate_end, decay=cfg.decay,
                       init=cfg.init, chunk=cfg.chunk)
    except ValueError as e:
        raise ConfigError(f"som: {e}") from None


def check(config: ml_collections.ConfigDict) -> tuple[SOMSpec, tuple[str, ...], list[str]]:
    """(map spec, layers, layer kinds) of a valid config; a one-line ConfigError otherwise."""
    cfg = config.som
    bad = [a for a in cfg.attacks if a not in ATTACKS]
    if bad:
        raise ConfigError(f"som.attacks: unknown {bad}; choose from {list(ATTACKS)}")
    if cfg.scale not in SCALES:
        raise ConfigError(f"som.scale: unknown {cfg.scale!r}; choose from {list(SCALES)}")
    if not 0.0 <= cfg.eps <= 1.0:
        raise ConfigError(f"som.eps must be in [0, 1] (inputs are in [0, 1]), got {cfg.eps}")
    for key, low in (("images", 0), ("chunk", 1), ("permutations", 1), ("pgd_steps", 1)):
        if cfg[key] < low:
            raise ConfigError(f"som.{key} must be >= {low}, got {cfg[key]}")
    if cfg.images == 1:
        raise ConfigError("som.images must be 0 (all) or >= 2: the claims bootstrap over images")
    spec = som_spec(cfg)
    net = train_protocol.build_model(config.model, 10)  # layer names do not depend on data
    try:
        layers = codes_lib.check_layers(net, tuple(cfg.layers))
    except ValueError as e:
        raise ConfigError(f"som.layers: {e}") from None
    sources = codes_lib.code_sources(net)
    return spec, layers, [sources[n][1] for n in layers]


def shallow_and_deep(layers: list[str], kinds: list[str]) -> tuple[list[str], list[str]]:
    """Shallow = the conv layers, deep = the dense layers; when the net has only one kind
    (or one layer is mapped), the first half of the layers vs the second half."""
    shallow = [n for n, k in zip(layers, kinds) if k == "conv"]
    deep = [n for n, k in zip(layers, kinds) if k != "conv"]
    if not shallow or not deep:
        half = max(1, len(layers) // 2)
        shallow, deep = layers[:half], layers[half:]
    return shallow, deep


def perturb(net: Net, params, key: jax.Array, x: jax.Array, y: jax.Array, *,
            attacks: tuple[str, ...], eps: float, pgd_steps: int) -> dict[str, jax.Array]:
    """``{"clean": x, attack: perturbed x}`` for one model (the attacks chunk the batch
    themselves; the parameters are an argument, so every seed reuses one program)."""
    fn = model_logits_fn(net, params)
    out = {"clean": x}
    for name in attacks:
        k = jax.random.fold_in(key, ATTACKS.index(name))
        if name == "pgd":
            out[name] = pgd(fn, x, y, eps=eps, steps=pgd_steps, key=k)
        elif name == "fgsm":
            out[name] = fgsm(fn, x, y, eps=eps)
        else:
            out[name] = analysis.sign_noise(k, x, eps)
    return out


def seed_codes(net: Net, states, keys: jax.Array, train: Dataset, x: jax.Array, y: jax.Array,
               layers: tuple[str, ...], attacks: tuple[str, ...],
               cfg: ml_collections.ConfigDict) -> tuple:
    """Every seed's perturbed inputs and scaled layer codes, stacked along a seed axis:
    (training codes (S, L, N_train, D), {set: (S, L, N, D)}, {set: (S, N)} predictions).

    A loop over seeds, each calling the same compiled programs (parameters are arguments):
    on CPU, convolutions vmapped over stacked kernels ran 2-3x slower than the loop
    (PGD-20 and the codes of LeNet-5, 3 seeds, 2 cores).
    """
    per_seed = []
    for i in range(keys.shape[0]):
        params = select(states, i)["params"]
        inputs = perturb(net, params, keys[i], x, y, attacks=attacks, eps=float(cfg.eps),
                         pgd_steps=int(cfg.pgd_steps))
        per_seed.append(analysis.network_codes(
            net, params, jnp.asarray(train.images), inputs, layers=layers, scale=cfg.scale,
            chunk=int(cfg.chunk)))
    return jax.tree.map(lambda *a: jnp.stack(a), *per_seed)


def _per_image_excess(moves: dict, attacks: list[str], layers: list[str], shallow: list[str],
                      deep: list[str]) -> dict:
    """Per seed and image, for each attack: the fraction of shallow (deep) layers whose BMU
    the attack moves minus the fraction the noise baseline moves. (S, N) each."""
    if NOISE not in moves or not shallow or not deep:
        return {}
    idx = {n: i for i, n in enumerate(layers)}
    out = {}
    for a in attacks:
        if a == NOISE:
            continue
        excess = moves[a]["moved"].astype(np.float64) - moves[NOISE]["moved"]  # (S, L, N)
        out[a] = {part: excess[:, [idx[n] for n in names]].mean(1)
                  for part, names in (("shallow", shallow), ("deep", deep))}
    return out


def _hit_maps(hits: dict) -> dict:
    """First seed's hit maps (clean and attacks, not the noise baseline) as (L, M)
    majority label (-1: no hits) and purity (the majority's share of the unit's hits)."""
    out = {}
    for name, h in hits.items():
        if name == NOISE:
            continue
        h = np.asarray(h[0], np.float64)  # (L, M, C)
        total = h.sum(-1)
        out[name] = {"majority_class": np.where(total > 0, h.argmax(-1), -1),
                     "purity": np.round(h.max(-1) / np.maximum(total, 1), 3)}
    return out


def run(config: ml_collections.ConfigDict, ctx: Context) -> dict:
    """Train or restore ``config.train.seeds``; map every layer of every seed; return the
    per-layer, per-seed measures and the per-image BMU moves over the noise baseline."""
    cfg = config.som
    spec, layers, kinds = check(config)
    attacks = tuple(dict.fromkeys(cfg.attacks))
    t0 = time.perf_counter()
    net, states, _, (train, test) = train_protocol.train_models(config, ctx)
    t_train = time.perf_counter() - t0
    n = min(cfg.images or test.images.shape[0], test.images.shape[0])
    x_eval, y_eval = jnp.asarray(test.images[:n]), jnp.asarray(test.labels[:n])
    seeds = list(config.train.seeds)
    keys = jax.vmap(lambda i: jax.random.split(jax.random.fold_in(
        jax.random.PRNGKey(cfg.seed), i)))(jnp.arange(len(seeds)))  # (S, 2, key)
    train_codes, codes, predictions = seed_codes(net, states, keys[:, 0], train, x_eval,
                                                 y_eval, layers, attacks, cfg)
    # The maps take arrays only: one vmapped program over seeds (and, inside, layers).
    out = jax.vmap(lambda k, tc, c, p: analysis.map_codes(
        spec, k, tc, jnp.asarray(train.labels), c, y_eval, p,
        num_classes=int(train.num_classes), permutations=int(cfg.permutations),
        chunk=int(cfg.chunk)))(keys[:, 1], train_codes, codes, predictions)
    out = jax.tree.map(np.asarray, {**out, "predictions": predictions})
    t_som = time.perf_counter() - t0 - t_train

    dims = {k: int(v.shape[-1]) for k, v in jax.eval_shape(
        lambda: codes_lib.layer_codes(net, select(states, 0)["params"], x_eval[:1],
                                      layers)).items()}
    per_layer = {}
    for li, name in enumerate(layers):
        res = {"code_dim": dims[name],
               **{k: v[:, li] for k, v in out["codes"].items()}}
        for a in attacks:
            res[a] = {k: v[:, li] for k, v in out["moves"][a].items()
                      if k not in ("moved", "distance")}
        per_layer[name] = res
    shallow, deep = shallow_and_deep(list(layers), kinds)
    y = np.asarray(y_eval)
    return {
        "model": config.model.name, "data": config.data.name, "seeds": seeds,
        "images": int(n), "train_images": int(train.images.shape[0]),
        "num_classes": int(train.num_classes),
        "grid": {"rows": cfg.rows, "cols": cfg.cols, "topology": cfg.topology},
        "units": spec.grid.size, "sigma_start": spec.sigma_start,
        "algorithm": cfg.algorithm, "steps": cfg.steps, "eps": cfg.eps,
        "attacks": list(attacks), "layers": list(layers), "layer_kinds": kinds,
        "shallow_layers": shallow, "deep_layers": deep,
        "accuracy": {k: (p == y).mean(-1) for k, p in out["predictions"].items()},
        "per_layer": per_layer,
        "moved_over_noise_per_image": _per_image_excess(out["moves"], list(attacks),
                                                        list(layers), shallow, deep),
        "hit_maps": _hit_maps(out["hits"]),
        "u_matrix": np.round(out["u_matrix"][0], 4),
        "seconds_train_or_restore": t_train,
        "seconds_som": t_som,
        "seconds": time.perf_counter() - t0,
    }
