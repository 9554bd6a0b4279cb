"""The four networks of PBR Forge and the configuration that sizes them.

`create_models(cfg)` returns an nn.ModuleDict with the contract's model names:

- classifier(image N,3,224,224)          -> (logits N,13, patch_logits N,13,224/p,224/p)
- metallic_seg(image N,3,H,W)            -> logits N,1,H,W
- albedo(diffuse N,3,H,W, normal, specular N,2,H,W) -> albedo N,3,H,W in [0, 1]
- maps(albedo, normal, condition N,14,H,W, specular, height_prior N,1,H,W) -> N,4,H,W in [0, 1]
  (contract.MAP_CHANNELS)

The config is saved inside every checkpoint (dataclasses.asdict) and rebuilt with ModelsConfig(**d).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from trainer.models.classifier import MaterialClassifier, PretrainedWeightsError
from trainer.models.lora import add_lora, merged_copy, unwrap
from trainer.models.segformer import MetallicSegmenter
from trainer.models.trainable import apply_train_mode, set_trainable, trainable_parameter_names
from trainer.models.shapes import check_image
from trainer.models.unet import UNetAlbedo, UNetMaps

__all__ = [
    "ModelsConfig", "create_models", "add_lora", "merged_copy", "unwrap", "set_trainable",
    "apply_train_mode", "trainable_parameter_names", "check_image", "PretrainedWeightsError",
]


@dataclass
class ModelsConfig:
    """Every size of every network. Defaults are the shipped CPU models (see cpu_default)."""

    # ViT classifier (fixed 224 input; patch 16 gives a 14 x 14 patch-logit grid).
    vit_embed_dim: int = 192
    vit_depth: int = 6
    vit_heads: int = 3
    vit_patch: int = 16
    vit_mlp_ratio: float = 4.0
    classifier_pretrained_path: str | None = None   # timm ViT weights file for a warm start
    # SegFormer (MiT encoder + all-MLP decoder), mit-b0 shape by default.
    seg_hidden_sizes: tuple[int, ...] = (32, 64, 160, 256)
    seg_depths: tuple[int, ...] = (2, 2, 2, 2)
    seg_heads: tuple[int, ...] = (1, 2, 5, 8)
    seg_sr_ratios: tuple[int, ...] = (8, 4, 2, 1)
    seg_decoder_hidden: int = 256
    segformer_pretrained_path: str | None = None    # saved transformers SegFormer folder
    # UNets: widths of the stem (H/2) and the four stride-2 levels (H/4 .. H/32).
    unet_widths: tuple[int, ...] = (16, 32, 64, 96, 128)
    unet_convs_per_level: int = 2      # 3x3 blocks per encoder level (after the strided one) and decoder level
    unet_final_width: int = 8          # channels of the full-resolution block and the heads' input
    unet_head_hidden: int = 8
    film_hidden: int = 16

    def __post_init__(self):
        # asdict -> JSON -> ModelsConfig(**d) turns tuples into lists; keep the dataclass hashable/comparable.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                setattr(self, field.name, tuple(value))

    @classmethod
    def cpu_default(cls) -> "ModelsConfig":
        """The shipped models: a 2K texture set converts in about 10 s on 2 CPU cores (docs/models.md)."""
        return cls()

    @classmethod
    def tiny(cls) -> "ModelsConfig":
        """Smallest models that exercise every code path (tests)."""
        return cls(vit_embed_dim=32, vit_depth=2, vit_heads=2, vit_mlp_ratio=2.0,
                   seg_hidden_sizes=(8, 16), seg_depths=(1, 1), seg_heads=(1, 1), seg_sr_ratios=(8, 4),
                   seg_decoder_hidden=16, unet_widths=(8, 8, 16, 16, 16), unet_convs_per_level=1,
                   unet_final_width=8, unet_head_hidden=4, film_hidden=8)

    @classmethod
    def full(cls) -> "ModelsConfig":
        """GPU-trained larger set (ViT-S/16, mit-b2-shaped SegFormer, 2x wider UNets)."""
        return cls(vit_embed_dim=384, vit_depth=12, vit_heads=6,
                   seg_hidden_sizes=(64, 128, 320, 512), seg_depths=(3, 4, 6, 3), seg_heads=(1, 2, 5, 8),
                   seg_decoder_hidden=768, unet_widths=(32, 64, 128, 256, 384), unet_convs_per_level=2,
                   unet_final_width=16, unet_head_hidden=16, film_hidden=64)


def create_models(cfg: ModelsConfig, seed: int | None = None) -> nn.ModuleDict:
    """Build the four networks from cfg (seeded when seed is given), in train mode on the CPU."""
    if seed is not None:
        torch.manual_seed(seed)
    return nn.ModuleDict({
        "classifier": MaterialClassifier(cfg.vit_embed_dim, cfg.vit_depth, cfg.vit_heads, cfg.vit_patch,
                                         cfg.vit_mlp_ratio, cfg.classifier_pretrained_path),
        "metallic_seg": MetallicSegmenter(cfg.seg_hidden_sizes, cfg.seg_depths, cfg.seg_heads,
                                          cfg.seg_sr_ratios, cfg.seg_decoder_hidden,
                                          cfg.segformer_pretrained_path),
        "albedo": UNetAlbedo(cfg.unet_widths, cfg.unet_convs_per_level, cfg.unet_final_width, cfg.unet_head_hidden),
        "maps": UNetMaps(cfg.unet_widths, cfg.unet_convs_per_level, cfg.unet_final_width, cfg.unet_head_hidden,
                         cfg.film_hidden),
    })
