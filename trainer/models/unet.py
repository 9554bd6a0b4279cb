"""UNet-Albedo and UNet-Maps: small convolutional UNets sized for 2K conversion on a laptop CPU.

Layout (widths w0..w4 from ModelsConfig.unet_widths, resolutions relative to the input H x W):

    input ──stem (3x3, stride 2)──> w0 @ H/2 ─ down1 ─> w1 @ H/4 ─ ... ─ down4 ─> w4 @ H/32
    decoder: up4..up1 (1x1 projection, bilinear x2, add skip, 3x3 convs) -> w0 @ H/2
    final_upsampling: 1x1, bilinear x2, concat the raw input, 3x3 conv   -> final_width @ H
    heads: one small head per output (3x3 conv + 1x1 conv)

Every conv is followed by BatchNorm + SiLU (BatchNorm rather than GroupNorm: it fuses into the conv
at export and trains ~3x faster on H100 in bf16/channels_last). UNet-Maps applies per-pixel FiLM from
the 14-channel condition at every decoder level and at the final upsampling; each FiLM generator's
last conv starts at zero, so FiLM is the identity at initialisation.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trainer.contract import CONDITION_CHANNELS, MAP_CHANNELS, SPECULAR_CHANNELS, UNET_MULTIPLE
from trainer.models.shapes import check_image


SPECULAR = len(SPECULAR_CHANNELS)


class ConvBNAct(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, stride: int = 1, kernel: int = 3):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
            nn.SiLU(inplace=True),
        )


class FiLM(nn.Module):
    """Per-pixel feature-wise affine modulation: x * (1 + gamma(c)) + beta(c).

    The condition holds logits (unbounded); a 1x1 conv + SiLU + 1x1 conv maps it to gamma/beta.
    The last conv is zero-initialised so the layer starts as the identity.
    """

    def __init__(self, cond_channels: int, channels: int, hidden: int):
        super().__init__()
        self.hidden = nn.Sequential(nn.Conv2d(cond_channels, hidden, 1), nn.SiLU(inplace=True))
        # Two projections rather than one split in half: ONNX Split changed in opset 18.
        self.gamma = nn.Conv2d(hidden, channels, 1)
        self.beta = nn.Conv2d(hidden, channels, 1)
        for conv in (self.gamma, self.beta):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.hidden(cond)
        return x * (1 + self.gamma(h)) + self.beta(h)


class UpBlock(nn.Module):
    """Decoder level: 1x1 projection at the coarse level, bilinear x2, add the skip (LinkNet-style:
    adding instead of concatenating halves the cost of the following conv), then `convs` 3x3 blocks."""

    def __init__(self, c_in: int, c_out: int, convs: int):
        super().__init__()
        self.project = ConvBNAct(c_in, c_out, kernel=1)
        self.convs = nn.Sequential(*[ConvBNAct(c_out, c_out) for _ in range(convs)])

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.project(x), scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.convs(x + skip)


class FinalUpsampling(nn.Module):
    """H/2 -> H: 1x1 projection, bilinear x2, concatenate the raw input (full-resolution detail),
    one 3x3 block. This is the only conv at full resolution, so its width sets most of the cost."""

    def __init__(self, c_in: int, c_input: int, c_out: int):
        super().__init__()
        self.project = ConvBNAct(c_in, c_out, kernel=1)
        self.conv = ConvBNAct(c_out + c_input, c_out)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.project(x), scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, image], dim=1))


class Head(nn.Sequential):
    """3x3 conv block then a 1x1 projection to the output channels (pre-activation values)."""

    def __init__(self, c_in: int, hidden: int, c_out: int, zero_init: bool = False):
        super().__init__(ConvBNAct(c_in, hidden), nn.Conv2d(hidden, c_out, 1))
        if zero_init:
            nn.init.zeros_(self[-1].weight)
            nn.init.zeros_(self[-1].bias)


class UNetTrunk(nn.Module):
    """Encoder, decoder and final upsampling shared by both UNets; optional FiLM per decoder level."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], convs_per_level: int, final_width: int,
                 cond_channels: int = 0, film_hidden: int = 32):
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"unet_widths needs 5 entries (stem + 4 levels), got {widths}")
        w = widths
        self.encoder = nn.ModuleList(
            [nn.Sequential(ConvBNAct(in_channels, w[0], stride=2),
                           *[ConvBNAct(w[0], w[0]) for _ in range(convs_per_level - 1)])]
            + [nn.Sequential(ConvBNAct(w[i - 1], w[i], stride=2),
                             *[ConvBNAct(w[i], w[i]) for _ in range(convs_per_level - 1)])
               for i in range(1, 5)])
        # decoder[j] goes from level 4-j to level 3-j (deepest first).
        self.decoder = nn.ModuleList(
            [UpBlock(w[i + 1], w[i], convs_per_level) for i in reversed(range(4))])
        self.final_upsampling = FinalUpsampling(w[0], in_channels, final_width)
        self.conditioned = cond_channels > 0
        if self.conditioned:
            self.decoder_film = nn.ModuleList(
                [FiLM(cond_channels, w[i], film_hidden) for i in reversed(range(4))])
            self.final_film = FiLM(cond_channels, final_width, film_hidden)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        skips = []
        h = x
        for stage in self.encoder:
            h = stage(h)
            skips.append(h)
        # Condition pyramid: average-pooled to each decoder resolution (H/16 .. H/2, then H).
        conds = {}
        if self.conditioned:
            c = cond
            conds[0] = c
            for level in range(1, 5):
                c = F.avg_pool2d(c, 2)
                conds[level] = c
        h = skips[-1]
        for j, block in enumerate(self.decoder):
            level = 3 - j          # skip index; its resolution is H / 2**(level + 1)
            h = block(h, skips[level])
            if self.conditioned:
                h = self.decoder_film[j](h, conds[level + 1])
        h = self.final_upsampling(h, x)
        if self.conditioned:
            h = self.final_film(h, conds[0])
        return h

    def parts(self) -> dict[str, list[nn.Module]]:
        decoder = [self.decoder] + ([self.decoder_film] if self.conditioned else [])
        final = [self.final_upsampling] + ([self.final_film] if self.conditioned else [])
        return {
            "encoder": [self.encoder],
            "encoder_top_half": list(self.encoder[len(self.encoder) // 2:]),
            "decoder": decoder,
            "final_upsampling": final,
        }


def unet_parts(trunk: UNetTrunk, heads: nn.ModuleDict) -> dict[str, list[nn.Module]]:
    """Trainable-part names of a UNet (see trainer.models.trainable)."""
    parts = trunk.parts()
    parts["heads"] = [heads]
    for name, head in heads.items():
        parts[f"head:{name}"] = [head]
    return parts


class UNetAlbedo(nn.Module):
    """diffuse (sRGB) + normal + specular -> albedo (sRGB), as a residual in logit space around the diffuse.

    albedo = sigmoid(logit(diffuse) + delta): delighting is mostly a per-pixel gain (remove baked
    shading/AO) plus small colour shifts, so starting from the identity (delta = 0 at init) is a strong
    prior and keeps outputs in [0, 1] without clamping gradients away.
    """

    EPS = 1e-3

    def __init__(self, widths: tuple[int, ...], convs_per_level: int, final_width: int, head_hidden: int):
        super().__init__()
        self.trunk = UNetTrunk(6 + SPECULAR, widths, convs_per_level, final_width)
        self.heads = nn.ModuleDict({"albedo": Head(final_width, head_hidden, 3, zero_init=True)})

    def forward(self, diffuse: torch.Tensor, normal: torch.Tensor, specular: torch.Tensor) -> torch.Tensor:
        check_image("diffuse", diffuse, 3, UNET_MULTIPLE)
        check_image("normal", normal, 3, UNET_MULTIPLE)
        check_image("specular", specular, SPECULAR, UNET_MULTIPLE)
        if not (diffuse.shape[2:] == normal.shape[2:] == specular.shape[2:]):
            raise ValueError(f"diffuse {tuple(diffuse.shape)}, normal {tuple(normal.shape)} and specular "
                             f"{tuple(specular.shape)} must have the same height and width")
        features = self.trunk(torch.cat([diffuse, normal, specular], dim=1))
        delta = self.heads["albedo"](features)
        base = torch.logit(diffuse.clamp(self.EPS, 1 - self.EPS))
        return torch.sigmoid(base + delta)

    def parts(self) -> dict[str, list[nn.Module]]:
        return unet_parts(self.trunk, self.heads)


# Where the sigmoid heads start: typical values of real PBR materials (rough-ish dielectrics).
MAP_PRIOR_MEANS = {"roughness": 0.6, "metallic": 0.05}
# Heads that predict a correction to a base instead of a sigmoid value: height to the integrated
# normals, AO to white (most of a real AO map is exactly 1, which a sigmoid never reaches). Their last
# conv starts at zero, so the untrained model outputs the base; the engine clips every map to [0, 1].
RESIDUAL_HEADS = ("ao", "height")


class UNetMaps(nn.Module):
    """albedo + normal + condition + specular + height prior -> roughness, metallic, ao, height.

    Roughness and metallic come from sigmoid heads; AO is white minus a correction and height the
    integrated-normal prior plus one (RESIDUAL_HEADS), so the untrained model starts exactly at the
    better classic baseline of each.
    """

    def __init__(self, widths: tuple[int, ...], convs_per_level: int, final_width: int, head_hidden: int,
                 film_hidden: int):
        super().__init__()
        self.trunk = UNetTrunk(7 + SPECULAR, widths, convs_per_level, final_width,
                               cond_channels=len(CONDITION_CHANNELS), film_hidden=film_hidden)
        self.heads = nn.ModuleDict({name: Head(final_width, head_hidden, 1, zero_init=name in RESIDUAL_HEADS)
                                    for name in MAP_CHANNELS})
        # Each head starts at a typical value of its map (the constant baseline) instead of 0.5:
        # sigmoid heads move slowly, and a prior of 0.5 for AO or metallic is far from any material.
        for name, mean in MAP_PRIOR_MEANS.items():
            nn.init.constant_(self.heads[name][-1].bias, math.log(mean / (1.0 - mean)))

    def forward(self, albedo: torch.Tensor, normal: torch.Tensor, condition: torch.Tensor,
                specular: torch.Tensor, height_prior: torch.Tensor) -> torch.Tensor:
        inputs = {"albedo": (albedo, 3), "normal": (normal, 3), "condition": (condition, len(CONDITION_CHANNELS)),
                  "specular": (specular, SPECULAR), "height_prior": (height_prior, 1)}
        for name, (x, channels) in inputs.items():
            check_image(name, x, channels, UNET_MULTIPLE)
        if any(x.shape[2:] != albedo.shape[2:] for x, _ in inputs.values()):
            raise ValueError("albedo, normal, condition, specular and height_prior must have the same height and "
                             "width, got " + ", ".join(f"{n} {tuple(x.shape)}" for n, (x, _) in inputs.items()))
        features = self.trunk(torch.cat([albedo, normal, specular, height_prior], dim=1), condition)
        base = {"ao": 1.0, "height": height_prior}
        maps = torch.cat([base[name] + self.heads[name](features) if name in RESIDUAL_HEADS
                          else torch.sigmoid(self.heads[name](features)) for name in MAP_CHANNELS], dim=1)
        # Training sees the unclipped corrections (a clip would stop the gradient of a prediction
        # beyond white); inference, the exported graph included, returns the contract's [0, 1].
        return maps if self.training else maps.clamp(0.0, 1.0)

    def parts(self) -> dict[str, list[nn.Module]]:
        return unet_parts(self.trunk, self.heads)
