"""ViT material classifier (timm), multi-label over contract.MATERIAL_CLASSES.

The wrapper takes sRGB [0, 1] images at the fixed contract size, normalises them with the ImageNet
statistics (what ViT warm starts were trained on) and returns image logits plus per-patch logits:
the same linear head applied to every patch token, so UNet-Maps gets a spatial material map for free.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from addon.engine.errors import PBRForgeError
from trainer.contract import CLASSIFIER_INPUT_SIZE, MATERIAL_CLASSES
from trainer.models.lora import unwrap
from trainer.models.shapes import check_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PretrainedWeightsError(PBRForgeError):
    """A warm-start weights file or folder that is missing or does not fit the configured model."""


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors / .pt / .pth / .bin file (unwrapping {"model": ...} holders)."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(
            f"Pretrained weights file {path} does not exist: fix the path or leave it empty to train from scratch.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "model_state"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return state


class ImageNormalise(nn.Module):
    """sRGB [0, 1] -> ImageNet-normalised input (a fixed buffer, exported into the ONNX graph)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class MaterialClassifier(nn.Module):
    def __init__(self, embed_dim: int, depth: int, num_heads: int, patch_size: int, mlp_ratio: float,
                 pretrained_path: str | None = None):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer
        self.normalise = ImageNormalise()
        self.vit = VisionTransformer(
            img_size=CLASSIFIER_INPUT_SIZE, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
            num_heads=num_heads, mlp_ratio=mlp_ratio, num_classes=len(MATERIAL_CLASSES))
        self.grid = CLASSIFIER_INPUT_SIZE // patch_size
        if pretrained_path:
            self.load_pretrained(pretrained_path)

    def load_pretrained(self, path: str | Path) -> None:
        """Warm start the backbone from a timm/ImageNet ViT file; the 13-class head stays fresh."""
        from timm.models.vision_transformer import checkpoint_filter_fn
        state = checkpoint_filter_fn(read_weights_file(path), self.vit)
        own = self.vit.state_dict()
        state = {k: v for k, v in state.items() if not (k.startswith("head.") and v.shape != own[k].shape)}
        missing, unexpected = self.vit.load_state_dict(state, strict=False)
        wrong = [k for k in missing if not k.startswith("head.")] + list(unexpected)
        if wrong:
            raise PretrainedWeightsError(
                f"Pretrained ViT weights {path} do not fit the configured classifier "
                f"({len(wrong)} mismatched tensors, e.g. {wrong[0]}): match embed/depth/patch in ModelsConfig.")

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image("image", image, 3, fixed_size=CLASSIFIER_INPUT_SIZE)
        vit = self.vit
        tokens = vit.forward_features(self.normalise(image))
        logits = vit.forward_head(tokens)
        patches = vit.head(tokens[:, unwrap(vit).num_prefix_tokens:])          # N, P, classes
        patch_logits = patches.transpose(1, 2).reshape(image.shape[0], len(MATERIAL_CLASSES),
                                                       self.grid, self.grid)
        return logits, patch_logits

    def parts(self) -> dict[str, list[nn.Module | nn.Parameter]]:
        vit = unwrap(self.vit)
        blocks = list(vit.blocks)
        embeddings = [p for p in (vit.cls_token, vit.reg_token, vit.pos_embed) if p is not None]
        return {
            "encoder": embeddings + [vit.patch_embed, vit.blocks, vit.norm_pre, vit.norm, vit.fc_norm],
            "encoder_top_half": blocks[len(blocks) // 2:] + [vit.norm, vit.fc_norm],
            "heads": [vit.head],
        }
