"""Which parameters train in a phase: named parts per model, everything else frozen.

Part names (docs/models.md has the table per model):
  all                every parameter (adapters included)
  none               nothing
  encoder            backbone / UNet encoder
  encoder_top_half   the deeper half of the encoder stages (ViT blocks, MiT stages, UNet levels)
  decoder            SegFormer decode head; UNet decoder levels with their FiLM layers
  final_upsampling   UNet last x2 upsampling block (and its FiLM)
  heads              output heads (ViT head, SegFormer classifier conv, UNet heads)
  head:<map>         one UNet-Maps head (roughness, metallic, ao, height)
  norm               BatchNorm / LayerNorm / GroupNorm affine parameters only
  lora               the LoRA adapter matrices (after add_lora)

LoRA matrices belong only to `lora` (and `all`), so ["heads", "lora"] is the classic adapter phase.
peft keeps a frozen copy of a saved head (`original_module`) that never reaches the output: it is
never made trainable. Call set_trainable after add_lora, and build the optimiser after set_trainable.
"""
from __future__ import annotations

from torch import nn

GENERIC_PARTS = ("all", "none", "norm", "lora")
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def _unused(name: str) -> bool:
    return "original_module" in name


def _is_lora(name: str) -> bool:
    return "lora_" in name


def _part_names(model_name: str, model: nn.Module, part: str) -> set[str]:
    ids = {}
    for name, parameter in model.named_parameters():
        if not _unused(name):
            ids[id(parameter)] = name
    if part == "none":
        return set()
    if part == "all":
        return set(ids.values())
    if part == "lora":
        names = {n for n in ids.values() if _is_lora(n)}
        if not names:
            raise ValueError(f"part 'lora' of {model_name}: the model has no LoRA adapters (call add_lora first)")
        return names
    if part == "norm":
        return {ids[id(p)] for m in model.modules() if isinstance(m, NORM_TYPES)
                for p in m.parameters(recurse=False) if id(p) in ids}
    parts = model.parts()
    if part not in parts:
        known = sorted(set(parts) | set(GENERIC_PARTS))
        raise ValueError(f"{model_name} has no part {part!r}; its parts are {known}")
    names = set()
    for item in parts[part]:
        params = [item] if isinstance(item, nn.Parameter) else item.parameters()
        names |= {ids[id(p)] for p in params if id(p) in ids and not _is_lora(ids[id(p)])}
    return names


def _trainable_names(models: nn.ModuleDict, spec: dict[str, list[str]]) -> dict[str, set[str]]:
    unknown = set(spec) - set(models.keys())
    if unknown:
        raise ValueError(f"trainable spec names unknown models {sorted(unknown)}; models are {list(models.keys())}")
    result = {}
    for model_name, model in models.items():
        names = set()
        for part in spec.get(model_name, ["none"]):
            names |= _part_names(model_name, model, part)
        result[model_name] = names
    return result


def set_trainable(models: nn.ModuleDict, spec: dict[str, list[str]]) -> dict[str, int]:
    """Set requires_grad from spec (model name -> part names); models not in spec are frozen.

    Returns the number of trainable parameters (elements) per model.
    """
    counts = {}
    for model_name, names in _trainable_names(models, spec).items():
        total = 0
        for name, parameter in models[model_name].named_parameters():
            parameter.requires_grad_(name in names)
            total += parameter.numel() if name in names else 0
        counts[model_name] = total
    return counts


def apply_train_mode(models: nn.ModuleDict, spec: dict[str, list[str]]) -> None:
    """train()/eval() to match spec: models with nothing to train run in eval mode, and in a training
    model every BatchNorm whose parameters are frozen is put in eval mode, so its running statistics
    stay frozen too. A `norm` phase (C') therefore updates norm parameters and their statistics."""
    for model_name, names in _trainable_names(models, spec).items():
        model = models[model_name]
        model.train(bool(names))
        if not names:
            continue
        trainable_ids = {id(p) for n, p in model.named_parameters() if n in names}
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                own = list(module.parameters(recurse=False))
                if not any(id(p) in trainable_ids for p in own):
                    module.eval()


def trainable_parameter_names(models: nn.ModuleDict) -> dict[str, list[str]]:
    """Names of the parameters that currently require grad, per model (for logs and tests)."""
    return {model_name: [n for n, p in model.named_parameters() if p.requires_grad]
            for model_name, model in models.items()}
