"""zero3-sp: give each epoch the data order Trainer asks for, also in a resumed run.

DeepSpeed's ``UlyssesSPDataLoaderAdapter`` (deepspeed/runtime/sequence_parallel/ulysses_sp.py, 0.19.8), which
accelerate wraps around the training loader under Ulysses sequence parallel, has no ``set_epoch``: Trainer's
per-epoch ``set_epoch(epoch)`` (trainer.py ``_run_epoch``) never reaches the loader beneath it. That loader,
accelerate's ``DataLoaderShard``, then numbers epochs by its own completed iterations (its ``__iter__`` calls
``set_epoch(self.iteration)``), so an uninterrupted run shuffles epoch e with seed + e, but a run resumed at
epoch e starts a fresh loader at iteration 0 and replays epoch 0's order: its loss after the resume is not the
uninterrupted run's (found by tests/executor/test_sequence_parallel.py's resume test). Before each epoch this
callback sets the wrapped loader's epoch to Trainer's and restarts the adapter's iterator (still unread at an
epoch's start), so both runs see the same order. Nothing else uses the adapter; GPU and CPU runs alike.
"""

from __future__ import annotations

from transformers import TrainerCallback


class UlyssesEpochCallback(TrainerCallback):
    """on_epoch_begin runs before Trainer draws the epoch's iterator (trainer.py: callback, then _run_epoch)."""

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        inner = getattr(train_dataloader, "dl", None)  # the adapter's wrapped DataLoaderShard
        if inner is None or not hasattr(inner, "set_epoch") or not hasattr(train_dataloader, "micro_batches"):
            return
        inner.set_epoch(round(state.epoch or 0))  # Trainer's epoch: whole at an epoch's start
        train_dataloader.iter = iter(inner)
        train_dataloader.micro_batches.clear()


def sequence_parallel_callbacks(strategy: str) -> list:
    """The callbacks a zero3-sp run needs; none for the other strategies."""
    return [UlyssesEpochCallback()] if strategy == "zero3-sp" else []
