"""LoRA adapters (peft) on the two transformers only: the ViT classifier and SegFormer.

The UNets are adapted by classic freeze-and-tune (see trainable.py), never by LoRA. Adapters go on
the attention projections; the task heads are saved in full (`modules_to_save`) so a LoRA phase can
also retrain them. Export folds the adapters into the weights on a copy (`merged_copy`).
"""
from __future__ import annotations

import copy

from torch import nn

# Wrapper attribute holding the transformer -> where LoRA goes and which head is trained in full.
# SegFormer attention names are the transformers 5.x ones (4.x called them attention.self.query/value).
LORA_TARGETS = {
    "classifier": ("vit", r".*blocks\.\d+\.attn\.qkv", ["head"]),
    "metallic_seg": ("segformer", ["q_proj", "v_proj"], ["decode_head"]),
}


def _is_peft(module: nn.Module) -> bool:
    from peft import PeftModel
    return isinstance(module, PeftModel)


def unwrap(module: nn.Module) -> nn.Module:
    """The underlying model of a peft-wrapped module (adapters stay injected), else the module itself."""
    return module.get_base_model() if _is_peft(module) else module


def add_lora(models: nn.ModuleDict, rank: int = 8, alpha: int | None = None) -> nn.ModuleDict:
    """Insert LoRA adapters into the classifier and SegFormer of `models` (in place, idempotent).

    Adapters start as a no-op (lora_B = 0), so outputs are unchanged right after this call. Calling it
    again on models that already carry adapters changes nothing. Returns `models` for chaining.
    """
    from peft import LoraConfig, get_peft_model
    for name, (attribute, targets, heads) in LORA_TARGETS.items():
        if name not in models:
            continue
        wrapper = models[name]
        inner = getattr(wrapper, attribute)
        if _is_peft(inner):
            existing = inner.peft_config["default"].r
            if existing != rank:
                raise ValueError(f"{name} already has LoRA rank {existing}, asked for rank {rank}")
            continue
        config = LoraConfig(r=rank, lora_alpha=alpha or rank, lora_dropout=0.0, target_modules=targets,
                            modules_to_save=list(heads))
        setattr(wrapper, attribute, get_peft_model(inner, config))
    return models


def merged_copy(model: nn.Module) -> nn.Module:
    """A deep copy of `model` (one wrapper or a whole ModuleDict) with every LoRA adapter folded into
    its base weights, leaving plain timm/transformers modules."""
    model = copy.deepcopy(model)
    wrapped = [(parent, attribute, child) for parent in model.modules()
               for attribute, child in parent.named_children() if _is_peft(child)]
    for parent, attribute, child in wrapped:
        setattr(parent, attribute, child.merge_and_unload())
    return model
