"""CPU-only shims that let Trainer run real FSDP and DeepSpeed ZeRO-3 across processes with gloo.

Applied by train.py ONLY when no accelerator is present and the job has more than one process; the
GPU path never goes through this module. Both shims were checked on accelerate 1.15 /
transformers 5.24 / deepspeed 0.19 (tests/executor/test_distributed.py runs them); each one
wraps an accelerate method and falls through to the original for everything it does not handle.
"""

from __future__ import annotations

import importlib
import os

_APPLIED = False


def needed() -> bool:
    """True on a CPU-only host running a multi-process job (the only case the shims are for)."""
    import torch

    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def apply() -> list[str]:
    """Install the shims (idempotent); returns a note per shim for the run log."""
    global _APPLIED
    if _APPLIED:
        return []
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    # 1. Backend. With use_cpu=False and no device, accelerate finds no backend and reports
    #    DistributedType.NO (world size 1): DeepSpeed then fails with "train_batch_size 8 != 8 * 1 * 2"
    #    and Trainer refuses FSDP ("only works in distributed training"). With use_cpu=True it would
    #    find MULTI_CPU, but then the DeepSpeed branch is skipped (it requires `not cpu`). So: keep
    #    use_cpu=False and answer gloo/MULTI_CPU where accelerate found nothing. accelerate then calls
    #    deepspeed.init_distributed("gloo") for DeepSpeed runs.
    original_backend = PartialState._prepare_backend

    def _prepare_backend(self, cpu=False, sagemaker_dp=False, backend=None):
        found_backend, dist_type = original_backend(self, cpu=cpu, sagemaker_dp=sagemaker_dp, backend=backend)
        if dist_type == DistributedType.NO and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return "gloo", DistributedType.MULTI_CPU
        return found_backend, dist_type

    PartialState._prepare_backend = _prepare_backend

    # 2. FSDP. accelerate promotes a multi-process state to FSDP only for GPU-like types
    #    (MULTI_GPU, MULTI_XPU, ...); on MULTI_CPU the FSDP plugin is silently dropped and Trainer
    #    trains with DDP (every rank holding the whole model). Promote MULTI_CPU to FSDP when a plugin
    #    was given; FSDP2's fully_shard itself works on CPU tensors with gloo.
    original_init = AcceleratorState.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        plugin = kwargs.get("fsdp_plugin")
        if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            if self._mixed_precision != "no":
                plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = plugin
            PartialState._shared_state["distributed_type"] = self.distributed_type

    AcceleratorState.__init__ = __init__

    # 4. ParallelismConfig (hsdp, fsdp-tp). accelerate accepts a ParallelismConfig only on FSDP2, DeepSpeed or
    #    a GPU-like multi-device type; a model tensor-parallel-sharded by transformers at load time runs
    #    without accelerate's FSDP plugin, so on CPU its type is MULTI_CPU and the config is refused ("only
    #    compatible DistributedType.FSDP ... or Multi{Device}"). The DTensor collectives themselves run on
    #    gloo: validate a MULTI_CPU state as the multi-device state it stands in for.
    from accelerate.parallelism_config import ParallelismConfig

    original_validate = ParallelismConfig._validate_accelerator

    class _AsMultiDevice:
        multi_device = True

        def __init__(self, accelerator):
            self._accelerator = accelerator

        def __getattr__(self, name):
            return getattr(self._accelerator, name)

    def _validate_accelerator(self, accelerator):
        if accelerator.distributed_type == DistributedType.MULTI_CPU:
            return original_validate(self, _AsMultiDevice(accelerator))
        return original_validate(self, accelerator)

    ParallelismConfig._validate_accelerator = _validate_accelerator
    notes = ["cpu_dist: no accelerator, multi-process job: accelerate patched to use gloo (MULTI_CPU) and to "
             "keep FSDP / DeepSpeed / ParallelismConfig on CPU (executor/cpu_dist.py)"]

    # 3. DeepSpeed's CPU backend JIT-compiles its shared-memory all-reduce op (shm_comm, 31-35 s with
    #    gcc) when its communication backend starts. The op serves only inference_all_reduce (tensor-
    #    parallel inference); training collectives go through torch.distributed (gloo) either way. Skip
    #    the build so a fresh machine (CI) does not spend half a minute compiling an op training never uses.
    try:  # by module name: `import deepspeed.comm.torch as m` yields the torch package (an attribute of deepspeed.comm)
        ds_comm_torch = importlib.import_module("deepspeed.comm.torch")
    except ImportError:
        pass
    else:
        ds_comm_torch.build_shm_op = lambda: None
        notes.append("cpu_dist: DeepSpeed's shm_comm op (inference all-reduce only) not built")
    _APPLIED = True
    return notes
