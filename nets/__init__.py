"""The networks under study: models, data, training, evaluation and checkpoints.

    from nets import data, models, train, evaluate
    tr, te = data.load("digits", "train"), data.load("digits", "test")
    net = models.get_model("lenet5")
    states, history = train.fit(net, tr, te, train.TrainSpec(epochs=15), seeds=(0, 1, 2))

Modules: ``data`` (digits, mnist5k, TFDS, synthetic), ``models`` (LeNet-5, AlexNet-style,
MLP: flax modules whose layers can be captured or run as slices), ``conv`` (exact
convolutions with CPU-fast paths), ``train`` (S models side by side in one vmapped step),
``adversarial`` (the PGD-AT and TRADES objectives ``train`` can use),
``evaluate`` (chunked logits and accuracy), ``batching`` (pad-to-chunk), ``sharding`` (meshes: models x data, data), ``stream`` (host-kept datasets fed in
prefetched device batches), ``autotune`` (per-machine choice among equivalent forms, e.g.
CPU convolutions; on once a record folder is set), ``checkpoint``
(orbax), ``distributed`` (several hosts), ``xla`` (compiler options).
"""

from nets import (
    adversarial,
    autotune,
    batching,
    checkpoint,
    data,
    distributed,
    evaluate,
    models,
    sharding,
    stream,
    train,
)
from nets.data import Dataset, DatasetNotPreparedError
from nets.models import COMPUTE_DTYPES, Net, count_params, get_model, init_params
from nets.train import NonFiniteLossError, StepTracker, TrainSpec, fit, select

__all__ = ["COMPUTE_DTYPES", "Dataset", "DatasetNotPreparedError", "Net", "NonFiniteLossError", "StepTracker", "TrainSpec",
           "adversarial", "autotune", "batching", "checkpoint", "count_params", "data", "distributed", "evaluate", "fit",
           "get_model", "init_params", "models", "select", "sharding", "stream", "train"]
