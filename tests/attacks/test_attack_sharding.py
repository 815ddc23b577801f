"""Attacks and evaluation split over 4 (forced host) devices give the numbers of one.

:func:`results` runs robust accuracy (PGD and DeepFool), the accuracy of two stacked
models and their logits on 30 digits with a randomly initialized LeNet-5, labelled with
its own predictions (every example starts correct, so the attacks have something to
break), and robust accuracy under AutoAttack (every member, small budgets) of a random
MLP on 22 of them. It runs twice: in this process (one device) and in one subprocess
with 4 forced host devices (the count is fixed when JAX starts), which also reports how
its compiled attack program is partitioned and which AutoAttack calls were split. 30 and
22 rows are not multiples of 4, so the padding is used. Both nets.evaluate and
attacks.evaluate are here to pay for one subprocess, not two.

The CPU chunk chosen by nets.autotune is checked in this process with its fake clock.
"""

import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from attacks import evaluate
from attacks.common import free_memory, rows_that_fit

GRIDS = {"linf": [0.0, 0.002, 0.004], "l2": [0.0, 0.02, 0.05, 0.1]}  # 3 linf eps: see HLO
# AutoAttack with every standard member first in turn (Square and FAB-T before the
# gradient attacks, so each gets examples to break), tiny budgets.
AA_MEMBERS = ("square", "apgd-ce", "apgd-t", "fab-t")
AA_SETTINGS = {"apgd-ce": {"steps": 5}, "apgd-t": {"steps": 5, "n_target_classes": 2},
               "fab-t": {"steps": 5, "n_target_classes": 2}, "square": {"queries": 30}}
AA_GRID = [0.0, 0.01, 0.02]


def results() -> dict:
    """The numbers to compare (JSON-ready), and on several devices the partitioning."""
    from attacks.common import model_logits_fn
    from nets import data, models, sharding
    from nets import evaluate as nets_evaluate

    te = data.load("digits", "test")
    net = models.lenet5()
    p0, p1 = (models.init_params(net, jax.random.PRNGKey(s), (28, 28, 1)) for s in (0, 1))
    x = te.images[:30]
    fn = model_logits_fn(net, p0)
    y = np.asarray(fn(jnp.asarray(x)).argmax(-1))  # model 0 is right on every example
    attacks = {"pgd": evaluate.make_attack("pgd", steps=3),
               "deepfool": evaluate.make_attack("deepfool", steps=5)}
    ra = evaluate.robust_accuracy(fn, x, y, attacks, GRIDS, key=jax.random.PRNGKey(1))
    aa, split_calls = _autoattack(te.images[:22])
    stacked = jax.tree.map(lambda *a: jnp.stack(a), p0, p1)
    test = data.Dataset(x, y, 10)
    placed = nets_evaluate.placed(test)
    out = {
        "devices": len(jax.devices()),
        "ra": {k: {"correct": v["correct"].tolist(), "min_eps": v["min_eps"].tolist()}
               for k, v in ra.items()},
        "accuracy": nets_evaluate.accuracy(net, stacked, test).tolist(),
        "accuracy_placed": nets_evaluate.accuracy(net, stacked, placed).tolist(),
        "oracle": [float(np.mean(np.asarray(net.apply({"params": p}, x)).argmax(-1) == y))
                   for p in (p0, p1)],
        "logits": np.asarray(nets_evaluate.logits(net, p1, x, chunk=4)).tolist(),
        "placed_devices": len(placed.images.sharding.device_set),
        "placed_rows": placed.images.shape[0],
        "placed_again_same_buffers": _buffers(nets_evaluate.placed(placed).images)
        == _buffers(placed.images),
        "aa": {k: v.tolist() for k, v in aa.items()},
        "aa_split_calls": split_calls,
    }
    if out["devices"] > 1:  # the compiled program of one PGD call of 16 rows
        mesh = sharding.data_mesh()
        args = sharding.split_rows((jnp.asarray(x[:16]), jnp.asarray(y[:16]),
                                    jax.random.split(jax.random.PRNGKey(0), 16)), mesh)
        compiled = evaluate._split_broken.compiled().lower(
            sharding.replicate(fn, mesh), attacks["pgd"], *args[:2],
            jnp.asarray(GRIDS["linf"]), args[2], targeted=False, bounds=(0.0, 1.0),
            mesh=mesh).compile()
        hlo = compiled.as_text()
        # images in the program: f32[..., 28, 28, 1], how many per array
        counts = {int(np.prod([int(d) for d in lead.split(",") if d]))
                  for lead in re.findall(r"f32\[([\d,]*?)28,28,1\]", hlo)}
        x_sharding = compiled.input_shardings[0][1]
        out["hlo"] = {"all-gather": "all-gather" in hlo, "images per array": sorted(counts),
                      "x devices": len(x_sharding.device_set),
                      "x split": x_sharding.spec == P("data")}
    return out


def _autoattack(x) -> tuple[dict, list[str]]:
    """Robust accuracy under AutoAttack of a random MLP (labels: its own predictions),
    and the programs whose calls were split over the devices (attacks.split)."""
    from attacks import common
    from attacks.common import model_logits_fn
    from nets import models

    net = models.mlp(hidden=(32,))
    fn = model_logits_fn(net, models.init_params(net, jax.random.PRNGKey(0), (28, 28, 1)))
    y = np.asarray(fn(jnp.asarray(x)).argmax(-1))
    attack = evaluate.make_attack("autoattack", version="custom", attacks=AA_MEMBERS,
                                  settings=AA_SETTINGS)
    split_call, names = common.split_call, set()

    def spy(call, rows, mesh):  # the program, or for a whole member the attack
        inner = call.args[0] if call.func.__name__ == "_call" else call.func
        names.add(inner.__name__)
        return split_call(call, rows, mesh)

    common.split_call = spy
    try:
        out = evaluate.robust_accuracy(fn, x, y, {"aa": attack}, AA_GRID,
                                       key=jax.random.PRNGKey(3))["aa"]
    finally:
        common.split_call = split_call
    return {"correct": out["correct"], "min_eps": out["min_eps"]}, sorted(names)


def _buffers(a: jax.Array) -> list[int]:
    return [s.data.unsafe_buffer_pointer() for s in a.addressable_shards]


SCRIPT = f"""
import json, runpy
from experiments import compile_cache
compile_cache.enable(compile_cache.default_dir())  # as the rest of the suite
print(json.dumps(runpy.run_path({str(Path(__file__))!r})["results"]()))
"""


@pytest.fixture(scope="module")
def runs(on_devices) -> tuple[dict, dict]:
    return results(), on_devices(SCRIPT, 4)


def test_robust_accuracy_on_four_devices_equals_one(runs):
    one, four = runs
    assert one["devices"] == 1 and four["devices"] == 4
    for name in ("pgd", "deepfool"):
        correct = np.asarray(one["ra"][name]["correct"])
        assert correct[0].all() and 0 < correct[-1].sum() < 30  # something to compare
        np.testing.assert_array_equal(four["ra"][name]["correct"], correct)
    np.testing.assert_array_equal(four["ra"]["pgd"]["min_eps"], one["ra"]["pgd"]["min_eps"])
    # DeepFool's measured norms (0.002 to 0.3): each device's rows take the same steps;
    # only float rounding of a smaller batch may differ (measured: none, identical)
    np.testing.assert_allclose(four["ra"]["deepfool"]["min_eps"],
                               one["ra"]["deepfool"]["min_eps"], rtol=1e-4)


def test_autoattack_on_four_devices_equals_one(runs):
    """Every member's calls split over the 4 devices (the whole member for APGD-CE and
    Square, each target's call for APGD-T and FAB-T, the predictions) give the one-device
    robust masks."""
    one, four = runs
    correct = np.asarray(one["aa"]["correct"])
    assert correct[0].all() and 0 < correct[1].sum() < 22 and correct[2].sum() < correct[1].sum()
    np.testing.assert_array_equal(four["aa"]["correct"], correct)
    np.testing.assert_array_equal(four["aa"]["min_eps"], one["aa"]["min_eps"])
    assert one["aa_split_calls"] == []
    assert four["aa_split_calls"] == ["_apgd_one_target", "_fab_t_one", "_logits", "_predict",
                                      "apgd", "square"]


def test_the_attack_program_is_split_over_the_devices(runs):
    # 16 rows over 4 devices: every device holds 4 images (3 eps x 4 = 12 in the vmapped
    # attack, halves of those in the CPU convolution's loop) and never gathers all 16.
    hlo = runs[1]["hlo"]
    assert hlo["x devices"] == 4 and hlo["x split"]  # rows over the data axis
    assert not hlo["all-gather"]
    assert max(hlo["images per array"]) == 12 and 16 not in hlo["images per array"]


def test_evaluation_on_four_devices_equals_one(runs):
    one, four = runs
    for run in runs:  # against the plain forward pass of each model
        assert run["oracle"][0] == 1.0 and run["oracle"][1] < 1.0
        np.testing.assert_allclose(run["accuracy"], run["oracle"], rtol=1e-6)
        np.testing.assert_allclose(run["accuracy_placed"], run["oracle"], rtol=1e-6)
    np.testing.assert_allclose(four["logits"], one["logits"], rtol=1e-5, atol=1e-6)
    # the test set placed once: padded to 32 rows over the 4 devices, and placing it
    # again moves nothing
    assert (one["placed_rows"], one["placed_devices"]) == (30, 1)
    assert (four["placed_rows"], four["placed_devices"]) == (32, 4)
    assert four["placed_again_same_buffers"] and one["placed_again_same_buffers"]


def test_the_default_chunk_is_a_multiple_of_the_devices_and_fits_the_memory(monkeypatch):
    need = lambda rows: 1000 * rows
    assert evaluate._chunk_rows(10, 30, 4, need) == 12  # rounded up to the devices
    assert evaluate._chunk_rows(100, 30, 4, need) == 32  # all rows, padded
    assert evaluate._chunk_rows(None, 30, 1, need) == evaluate.CPU_CHUNK  # CPU
    monkeypatch.setattr(evaluate.xla, "is_cpu", lambda: False)
    monkeypatch.setattr(evaluate, "free_memory", lambda: None)
    assert evaluate._chunk_rows(None, 30, 4, need) == 32  # no memory figures: all rows
    # all 32 rows (8 a device) need 32 kB a device: 4 kB per row of a device
    monkeypatch.setattr(evaluate, "free_memory", lambda: 40_000)  # 0.8 of it: 32 kB
    assert evaluate._chunk_rows(None, 30, 4, need) == 32
    monkeypatch.setattr(evaluate, "free_memory", lambda: 20_000)  # 16 kB: 4 rows a device
    assert evaluate._chunk_rows(None, 30, 4, need) == 16
    monkeypatch.setattr(evaluate, "free_memory", lambda: 10_000)  # 8 kB: 2 rows a device
    assert evaluate._chunk_rows(None, 30, 4, need) == 8
    monkeypatch.setattr(evaluate, "free_memory", lambda: 10)  # never less than 1 a device
    assert evaluate._chunk_rows(None, 30, 4, need) == 4
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        evaluate._chunk_rows(0, 30, 4, need)


def test_off_cpu_the_chunk_comes_from_the_compiled_call_and_changes_nothing(monkeypatch):
    """The accelerator default on this CPU: free memory for about a third of the rows
    gives smaller calls, with the same per-example results as the CPU chunks."""
    from attacks.common import program_bytes

    fn, x, y, attacks, grid, key = _tiny_pgd_case()
    cpu = evaluate.robust_accuracy(fn, x, y, attacks, grid, key=key)
    whole = program_bytes(evaluate._broken.compiled().lower(
        fn, attacks["pgd"], x, y, jnp.asarray(grid), jax.random.split(key, 48),
        targeted=False, bounds=(0.0, 1.0)).compile())
    assert whole > 48 * 6 * 6 * 4 * 3  # at least the inputs of the 3 attacks
    sizes = []
    chunk_rows = evaluate._chunk_rows
    monkeypatch.setattr(evaluate, "_chunk_rows", lambda *a: sizes.append(chunk_rows(*a))
                        or sizes[-1])
    monkeypatch.setattr(evaluate.xla, "is_cpu", lambda: False)
    monkeypatch.setattr(evaluate, "free_memory", lambda: int(whole / 3 / 0.8))
    off = evaluate.robust_accuracy(fn, x, y, attacks, grid, key=key)
    assert 10 <= sizes[0] <= 16  # a third of 48, less the parameters counted per row
    np.testing.assert_array_equal(off["pgd"]["correct"], cpu["pgd"]["correct"])
    assert 0 < cpu["pgd"]["correct"][-1].sum() < 48


def _tiny_pgd_case():
    """(logits fn, x, y, attacks, grid, key): 2-step PGD on a random 4-class MLP over 48
    random 6x6 images labelled with its own predictions."""
    from attacks.common import model_logits_fn
    from nets import models

    net = models.mlp(num_classes=4, hidden=(16,))
    fn = model_logits_fn(net, models.init_params(net, jax.random.PRNGKey(0), (6, 6, 1)))
    x = jax.random.uniform(jax.random.PRNGKey(1), (48, 6, 6, 1))
    y = fn(x).argmax(-1)
    attacks = {"pgd": evaluate.make_attack("pgd", steps=2)}
    return fn, x, y, attacks, [0.0, 0.05, 0.1], jax.random.PRNGKey(2)


def test_free_memory_reads_the_device_stats():
    class Device:
        def __init__(self, stats):
            self.stats = stats

        def memory_stats(self):
            return self.stats

    assert free_memory(Device({"bytes_limit": 100, "bytes_in_use": 30})) == 70
    assert free_memory(Device(None)) is None
    assert free_memory(jax.devices("cpu")[0]) is None  # XLA:CPU reports none
    assert rows_that_fit(1000.0, 10_000) == 8 and rows_that_fit(1e9, 10) == 1


def test_autotune_picks_the_cpu_chunk_faster_per_example(monkeypatch, tmp_path):
    """With nets.autotune on, one device and a fake clock on which a call of 32 rows
    costs 1.5 (0.047 a row) and one of 16 costs 1.0 (0.0625 a row), robust accuracy runs
    in chunks of 32, records the choice, does not time again, and gives the masks of the
    default chunks; where 32 rows cost 3.0 it keeps CPU_CHUNK. Off: CPU_CHUNK, untimed."""
    from nets import autotune

    fn, x, y, attacks, grid, key = _tiny_pgd_case()
    clock, sizes, cost = [0.0], [], {}
    broken = evaluate._broken

    def timed(fn, attack, x, *args, **kwargs):  # a call costs cost[rows] on the fake clock
        sizes.append(x.shape[0])
        clock[0] += cost.get(x.shape[0], 0.0)
        return broken(fn, attack, x, *args, **kwargs)

    monkeypatch.setattr(evaluate, "_broken", timed)
    monkeypatch.setattr(autotune, "timer", lambda: clock[0])
    monkeypatch.delenv(autotune.ENV, raising=False)
    autotune.set_dir(None)
    autotune.forget()
    try:
        default = evaluate.robust_accuracy(fn, x, y, attacks, grid, key=key)["pgd"]
        assert sizes == [16, 16, 16]  # off (no folder): CPU_CHUNK, nothing timed
        assert 0 < default["correct"][-1].sum() < 48

        monkeypatch.setattr(autotune, "enabled", True)
        autotune.set_dir(tmp_path)
        cost.update({16: 1.0, 32: 1.5})
        sizes.clear()
        tuned = evaluate.robust_accuracy(fn, x, y, attacks, grid, key=key)["pgd"]
        assert sizes[-2:] == [32, 32] and 16 in sizes[:-2]  # timed, then 48 rows in 2 calls
        entries = json.loads((tmp_path / autotune.FILE).read_text())["entries"]
        (full, entry), = entries.items()
        assert entry["choice"] == "32" and "robust_accuracy" in full and "x(6, 6, 1)" in full
        np.testing.assert_array_equal(tuned["correct"], default["correct"])
        np.testing.assert_array_equal(tuned["min_eps"], default["min_eps"])
        sizes.clear()
        evaluate.robust_accuracy(fn, x, y, attacks, grid, key=key)
        assert sizes == [32, 32]  # the record: not timed again

        autotune.forget()
        autotune.set_dir(tmp_path / "other")
        cost.update({16: 1.0, 32: 3.0})
        sizes.clear()
        slow = evaluate.robust_accuracy(fn, x, y, attacks, grid, key=key)["pgd"]
        assert sizes[-3:] == [16, 16, 16] and 32 in sizes[:-3]
        np.testing.assert_array_equal(slow["correct"], default["correct"])
    finally:
        autotune.set_dir(None)
        autotune.forget()
