"""fsdp-tp checkpoints that resume: every rank's shard of the model and of the optimizer, through torch DCP.

A model that transformers shards while loading (``DistributedConfig``: its tp_plan x FSDP2) is not an
accelerate FSDP model, so Trainer saves it as a plain one: the gathered full weights (save_pretrained, kept for
evaluation and promotion) and ``optimizer.pt`` from rank 0 alone, i.e. rank 0's local shards, which no other rank
can load (and it refuses that unless told to save the model only). This Trainer subclass adds, on every rank, the sharded model and optimizer state dicts
(``torch.distributed.checkpoint.state_dict`` get_model_state_dict / get_optimizer_state_dict: DTensor shards,
one file per rank plus DCP's metadata) into ``<checkpoint>/tp_state/``, and reads them back on resume
(set_model_state_dict / set_optimizer_state_dict). The scheduler, RNG and trainer state stay Trainer's own files.
Source: PyTorch "Distributed Checkpoint - torch.distributed.checkpoint" (save / load of DTensor state dicts; each
rank writes and reads its own shards) and torch.distributed.checkpoint.state_dict's docs.
"""

from __future__ import annotations

import os
from pathlib import Path

TP_STATE = "tp_state"  # DCP folder inside a checkpoint: every rank's model and optimizer shards


def _torch_optimizer(optimizer):
    """accelerate wraps the optimizer (AcceleratedOptimizer); DCP wants the torch one."""
    return getattr(optimizer, "optimizer", optimizer)


def tensor_parallel_trainer_class():
    """Trainer whose checkpoints hold every rank's model and optimizer shards (fsdp-tp), and resume from them."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict, get_optimizer_state_dict, set_model_state_dict, set_optimizer_state_dict,
    )
    from transformers import Trainer
    from transformers.trainer import SCHEDULER_NAME

    class TensorParallelTrainer(Trainer):
        # Trainer refuses to checkpoint a model sharded at load time unless save_only_model=True (translate.py
        # sets it): it saves the model and trainer state, this adds what a resume needs on top.
        def _save_checkpoint(self, model, trial) -> None:
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            super()._save_checkpoint(model, trial)
            output_dir = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            self._save_optimizer_and_scheduler(output_dir)
            self._save_rng_state(output_dir)

        def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
            opt = _torch_optimizer(self.optimizer)
            state = {"model": get_model_state_dict(self.model),
                     "optimizer": get_optimizer_state_dict(self.model, opt)}
            dcp.save(state, checkpoint_id=os.path.join(output_dir, TP_STATE))  # every rank: its shards
            if self.args.should_save:
                torch.save(self.lr_scheduler.state_dict(), os.path.join(output_dir, SCHEDULER_NAME))

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
            model = model if model is not None else self.model
            folder = Path(resume_from_checkpoint) / TP_STATE
            if not folder.is_dir():
                from advisor.errors import UserError

                raise UserError(f"{Path(resume_from_checkpoint).name}: no {TP_STATE}/ (the sharded model and optimizer "
                                "an fsdp-tp run resumes from): start a new run folder, or promote / evaluate it")
            state = {"model": get_model_state_dict(model)}
            dcp.load(state, checkpoint_id=str(folder))
            set_model_state_dict(model, state["model"])

        def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
            if checkpoint is None:
                return
            opt = _torch_optimizer(self.optimizer)
            state = {"optimizer": get_optimizer_state_dict(self.model, opt)}
            dcp.load(state, checkpoint_id=os.path.join(checkpoint, TP_STATE))
            set_optimizer_state_dict(self.model, opt, state["optimizer"])
            self.lr_scheduler.load_state_dict(torch.load(os.path.join(checkpoint, SCHEDULER_NAME), weights_only=True))

    return TensorParallelTrainer
