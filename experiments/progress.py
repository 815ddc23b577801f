"""Progress bars (tqdm) for the command line; the libraries report through callbacks."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from tqdm.auto import tqdm


def logging_bar(log: Callable[[dict], None], total: int, desc: str,
                show: bool) -> tuple[Callable[[dict], None], Callable[[], None]]:
    """(log function, close): ``log`` passes each record on and advances a bar by one
    (an epoch record of ``nets.train.fit``), showing its loss and accuracy."""
    bar = tqdm(total=total, desc=desc, unit="epoch", disable=not show)

    def step(record: dict) -> None:
        log(record)
        loss, acc = record.get("train_loss"), record.get("test_accuracy")
        post = {}
        if loss is not None:
            post["loss"] = f"{sum(loss) / len(loss):.4f}"
        if acc is not None:
            post["acc"] = f"{sum(acc) / len(acc):.4f}"
        bar.set_postfix(post)
        bar.update(1)

    return step, bar.close


def iterate(items: Iterable, desc: str, show: bool, total: int | None = None) -> Iterable:
    """``items`` with a progress bar when ``show``."""
    return tqdm(items, desc=desc, total=total, disable=not show)
