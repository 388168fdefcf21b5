"""How the training loop runs on several processes.

* ``ddp`` (and one process): accelerate's ``prepare`` (DDP under ``torchrun``/``accelerate launch``).
* ``fsdp``: torch FSDP2 directly — ``fully_shard`` on each decoder layer, then on the model.
  Parameters, gradients and optimiser state are sharded; checkpoints and the final save gather
  full state dicts (``get_model_state_dict(full_state_dict=True, cpu_offload=True)``), so they are
  the same files as under DDP. accelerate's FSDP path needs a GPU; this one also runs on CPU/gloo.
* ``zero2``: DeepSpeed ZeRO stage 2 (optimiser state and gradients partitioned) through
  ``deepspeed.initialize`` under the same launcher. The engine accumulates (micro-batch size and
  accumulation steps are set from ``optim``), clips, and steps only at the end of each global batch.
  accelerate's own DeepSpeed path is not used: on a machine without GPUs it reports one process
  per rank (accelerate 1.15), so it cannot be exercised there.

In every mode the loss of a micro-batch is the summed token loss times the world size over the
global target-token count: each backend averages gradients over processes.
"""

from __future__ import annotations

import math
import os
from contextlib import nullcontext
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from radllama.errors import RadLlamaError

MODES = ("ddp", "fsdp", "zero2")
DEEPSPEED_TAG = "deepspeed"  # DeepSpeed's own files inside a step-NNNNNN/ checkpoint


def _full_options() -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def rank_micro_batches(idx: list[int], rank: int, world: int, micro_batch_size: int) -> list[list[int]]:
    """This rank's share of a global batch in micro-batches, as many on every rank.

    Under FSDP every forward and backward is a collective, so a rank with one micro-batch fewer
    leaves the others waiting for ever (and a DDP rank with none never joins the gradient
    exchange). A short rank gets empty micro-batches at the end: the loop runs them as one fully
    masked example (zero loss, zero gradient), so every example still counts once.
    """
    mine = idx[rank::world]  # already in length order (step_indices): micro-batches of similar lengths
    micro = [mine[i : i + micro_batch_size] for i in range(0, len(mine), micro_batch_size)]
    most = math.ceil(math.ceil(len(idx) / world) / micro_batch_size) if idx else 0
    return micro + [[] for _ in range(max(1, most) - len(micro))]


class Parallel:
    """One process's view of the parallel run: wrapping, backward, state gathering and loading."""

    def __init__(self, accelerator: Accelerator, mode: str) -> None:
        if mode not in MODES:
            raise RadLlamaError(f"parallel must be one of {', '.join(MODES)}, not {mode!r}")
        # On CPU accelerate ignores these configs and would quietly run DDP: refuse them by their env too.
        launched_with = [k for k in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP") if os.environ.get(k) == "true"]
        if accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP) or launched_with:
            raise RadLlamaError(
                "accelerate's DeepSpeed/FSDP launch configs are not used: launch with torchrun (or "
                "configs/accelerate/ddp.yaml) and set parallel=fsdp or parallel=zero2 (docs/training.md)"
            )
        self.accelerator = accelerator
        self.world = accelerator.num_processes
        self.mode = mode if self.world > 1 else "ddp"  # one process: nothing to shard

    # --- set-up -------------------------------------------------------------------------------
    def shard(self, model: Any) -> Any:
        """FSDP2: shard each decoder layer and the whole model (before the optimiser is built)."""
        if self.mode != "fsdp":
            return model
        from torch.distributed.fsdp import fully_shard

        layer_names = set(getattr(_base(model), "_no_split_modules", None) or [])
        layers = [m for m in model.modules() if type(m).__name__ in layer_names]
        if not layers:
            raise RadLlamaError(f"parallel=fsdp: no decoder layers ({sorted(layer_names)}) found in the model")
        for layer in layers:
            fully_shard(layer)
        fully_shard(model)
        self.accelerator.print(f"FSDP2: {len(layers)} decoder layers and the model sharded over {self.world} processes")
        return model

    def prepare(self, model: Any, optimizer: Any, batch_size: int, micro_batch_size: int, grad_clip: float) -> Any:
        if self.mode == "fsdp":
            return model, optimizer
        if self.mode == "zero2":
            return _deepspeed_zero2(model, optimizer, self.world, batch_size, micro_batch_size, grad_clip)
        return self.accelerator.prepare(model, optimizer)

    # --- one step -----------------------------------------------------------------------------
    def sync_context(self, model: Any, last_micro_batch: bool) -> Any:
        """Hold back the gradient exchange until the global batch's last micro-batch."""
        if self.world == 1 or self.mode == "zero2":  # the engine knows its accumulation boundary
            return nullcontext()
        if self.mode == "fsdp":
            model.set_requires_gradient_sync(last_micro_batch)
            return nullcontext()
        return nullcontext() if last_micro_batch else self.accelerator.no_sync(model)

    def backward(self, model: Any, loss: torch.Tensor) -> None:
        if self.mode == "zero2":
            model.backward(loss, scale_wrt_gas=False)  # our loss is already per global batch
            model.step()  # a no-op until the engine's accumulation boundary
        else:
            self.accelerator.backward(loss)

    def optimizer_step(self, model: Any, optimizer: Any, grad_clip: float) -> None:
        if self.mode == "zero2":
            return  # stepped (and clipped) by the engine at the boundary
        if grad_clip:
            if self.mode == "fsdp":
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)  # DTensor-aware
            else:
                self.accelerator.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # --- state --------------------------------------------------------------------------------
    def unwrap(self, model: Any) -> Any:
        if self.mode == "zero2":
            return model.module  # ZeRO-2 keeps every parameter whole on every rank
        return model if self.mode == "fsdp" else self.accelerator.unwrap_model(model)

    def full_state(self, model: Any) -> dict[str, torch.Tensor] | None:
        """The whole model's state dict on the main process (a collective under FSDP), or None
        where the unwrapped model's own ``save_pretrained`` already sees every weight."""
        if self.mode != "fsdp":
            return None
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(model, options=_full_options())

    def trainable_state(self, model: Any) -> dict[str, torch.Tensor]:
        """What training changes (LoRA weights, or all) as full CPU tensors, on the main process."""
        inner = self.unwrap(model)
        names = {n for n, p in inner.named_parameters() if p.requires_grad}
        full = self.full_state(model)  # FSDP: every rank takes part, rank 0 receives
        if full is None:
            if not self.accelerator.is_main_process:
                return {}  # every rank holds the same weights: only the writer copies them
            full = inner.state_dict()
        return {k: v.detach().cpu() for k, v in full.items() if k in names}

    def load_trainable(self, model: Any, weights: dict[str, torch.Tensor]) -> bool:
        """Load checkpoint weights; False when they do not fit this model."""
        inner = self.unwrap(model)
        expected = {n for n, p in inner.named_parameters() if p.requires_grad}
        if not set(weights) <= {n for n, _ in inner.named_parameters()} | set(inner.state_dict()):
            return False
        if expected - set(weights):
            return False
        if self.mode == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True, strict=False))
        else:
            inner.load_state_dict(weights, strict=False)
        return True

    def optimizer_state(self, model: Any, optimizer: Any) -> dict[str, Any] | None:
        """Full optimiser state for ``optimizer.pt`` (collective under FSDP); None under DeepSpeed,
        whose partitioned state goes into its own files (:meth:`save_engine`)."""
        if self.mode == "zero2":
            return None
        if self.mode == "fsdp":
            from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

            return get_optimizer_state_dict(model, optimizer, options=_full_options())
        return optimizer.state_dict() if self.accelerator.is_main_process else None

    def load_optimizer(self, model: Any, optimizer: Any, ckpt: Any) -> None:
        if self.mode == "zero2":
            path, _ = model.load_checkpoint(
                str(ckpt), tag=DEEPSPEED_TAG, load_module_strict=False, load_lr_scheduler_states=False
            )
            if path is None:
                raise RadLlamaError(f"{ckpt}: no DeepSpeed optimizer state ({DEEPSPEED_TAG}/): saved by another mode?")
            return
        state = torch.load(ckpt / "optimizer.pt", weights_only=False)
        if self.mode == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
        else:
            optimizer.load_state_dict(state)

    def save_engine(self, model: Any, tmp: Any) -> None:
        """DeepSpeed's partitioned optimiser state (every rank writes its part)."""
        if self.mode == "zero2":
            # Frozen weights are left out: the base model is not copied into every checkpoint.
            model.save_checkpoint(str(tmp), tag=DEEPSPEED_TAG, save_latest=False, exclude_frozen_parameters=True)


def _base(model: Any) -> Any:
    """The transformers model under a peft wrapper (it carries ``_no_split_modules``)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _deepspeed_zero2(
    model: Any, optimizer: Any, world: int, batch_size: int, micro_batch_size: int, grad_clip: float
) -> tuple[Any, Any]:
    """The DeepSpeed engine for ZeRO-2 over the already initialised process group."""
    per_rank = batch_size // world
    if batch_size % world or per_rank % micro_batch_size:
        raise RadLlamaError(
            f"parallel=zero2 needs optim.batch_size ({batch_size}) to split into {world} processes x whole "
            f"micro-batches of optim.micro_batch_size ({micro_batch_size})"
        )
    try:
        import deepspeed
    except ImportError as exc:
        raise RadLlamaError("parallel=zero2 needs DeepSpeed: pip install 'radllama[deepspeed]'") from exc
    dtypes = {p.dtype for p in model.parameters() if p.requires_grad}
    config = {
        # Half-precision trainable weights get DeepSpeed's fp32 master copy, as ZeRO expects.
        "bf16": {"enabled": torch.bfloat16 in dtypes},
        "fp16": {"enabled": torch.float16 in dtypes},
        "train_batch_size": batch_size,
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": per_rank // micro_batch_size,
        "gradient_clipping": grad_clip,
        "zero_optimization": {"stage": 2},
        "zero_allow_untested_optimizer": True,  # our AdamW, as in every other mode
        "steps_per_print": 2**31 - 1,  # radllama logs the loss itself
    }
    # The scheduler was built on ``optimizer``: ZeRO keeps its param_groups, so lr changes reach it.
    engine, ds_optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    return engine, ds_optimizer
