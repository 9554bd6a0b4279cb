"""SegFormer metallic-mask model (transformers), one output logit per pixel.

The wrapper takes an sRGB [0, 1] image of any size, normalises it with the ImageNet statistics and
upsamples SegFormer's H/4 logits back to the input size, so the exported ONNX graph maps
N,3,H,W -> N,1,H,W directly.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from trainer.models.classifier import ImageNormalise, PretrainedWeightsError
from trainer.models.lora import unwrap
from trainer.models.shapes import check_image

# Below this side the MiT encoder's sequence reduction collapses a stage to a single token and the
# exported graph's shape assumptions stop holding (with the default sr_ratios 8, 4, 2, 1).
SEGFORMER_MIN_SIDE = 64


class MetallicSegmenter(nn.Module):
    def __init__(self, hidden_sizes: tuple[int, ...], depths: tuple[int, ...], num_heads: tuple[int, ...],
                 sr_ratios: tuple[int, ...], decoder_hidden: int, pretrained_path: str | None = None):
        super().__init__()
        from transformers import SegformerConfig, SegformerForSemanticSegmentation
        self.normalise = ImageNormalise()
        if pretrained_path:
            path = Path(pretrained_path)
            if not (path / "config.json").is_file():
                raise PretrainedWeightsError(
                    f"Pretrained SegFormer folder {path} has no config.json: point it at a saved "
                    "transformers SegFormer folder or leave it empty to train from scratch.")
            # The backbone comes from the folder; the 1-label decode head is re-initialised.
            self.segformer = SegformerForSemanticSegmentation.from_pretrained(
                str(path), num_labels=1, ignore_mismatched_sizes=True)
        else:
            config = SegformerConfig(
                num_channels=3, num_encoder_blocks=len(hidden_sizes), hidden_sizes=list(hidden_sizes),
                # MiT layout: a 7x7/4 patch embedding, then 3x3/2 per further stage.
                patch_sizes=[7] + [3] * (len(hidden_sizes) - 1), strides=[4] + [2] * (len(hidden_sizes) - 1),
                mlp_ratios=[4] * len(hidden_sizes),
                depths=list(depths), num_attention_heads=list(num_heads), sr_ratios=list(sr_ratios),
                decoder_hidden_size=decoder_hidden, num_labels=1,
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.0,
                drop_path_rate=0.0)
            self.segformer = SegformerForSemanticSegmentation(config)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        check_image("image", image, 3)
        if min(image.shape[-2:]) < SEGFORMER_MIN_SIDE:
            raise ValueError(f"image must be at least {SEGFORMER_MIN_SIDE} x {SEGFORMER_MIN_SIDE}, "
                             f"got {tuple(image.shape)}")
        logits = self.segformer(pixel_values=self.normalise(image)).logits
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)

    def parts(self) -> dict[str, list[nn.Module]]:
        model = unwrap(self.segformer)
        stages = list(model.segformer.stages)
        return {
            "encoder": [model.segformer],
            "encoder_top_half": stages[len(stages) // 2:],
            "decoder": [model.decode_head],
            "heads": [model.decode_head.classifier],
        }
