"""Evaluation metrics and the torch GGX renderer (NCHW tensors, maps in [0, 1]).

render_ggx prepares torch tensors for addon/engine/brdf.py's `ggx_radiance`, the one copy of the
formula (documented there), which numpy's render_ggx also calls; tests/trainer/test_losses_metrics.py
compares the two renderers.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F

# The GGX formula and its constants have one home, addon/engine/brdf.py.
from addon.engine.brdf import MIN_ROUGHNESS, ggx_radiance
from addon.engine.colour import srgb_decode
# torchvision's AlexNet weights, the backbone LPIPS needs (its own linear heads ship in the wheel).
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


# ------------------------------------------------------------------------------------ rendering

def srgb_to_linear(srgb: torch.Tensor) -> torch.Tensor:
    """The engine's sRGB decoding (addon/engine/colour.py) on a tensor, differentiable."""
    return srgb_decode(srgb.clamp(0.0, 1.0), torch.where)


def _direction(d, like: torch.Tensor) -> torch.Tensor:
    d = torch.as_tensor(d, dtype=like.dtype, device=like.device).reshape(1, 3, 1, 1)
    return d / d.norm()


def render_ggx(base_srgb: torch.Tensor, normal: torch.Tensor, roughness: torch.Tensor, metallic: torch.Tensor,
               light_dir, view_dir) -> torch.Tensor:
    """N,3,H,W radiance (times n.l) of a surface under a unit directional light, tangent space (z out).

    base_srgb N3HW, normal N3HW (normalised here), roughness and metallic N1HW; light_dir and
    view_dir are 3-vectors (normalised here). Differentiable in every map.
    """
    base = srgb_to_linear(base_srgb)
    n = F.normalize(normal, dim=1, eps=1e-8)
    l = _direction(light_dir, base)
    v = _direction(view_dir, base)
    h = (l + v) / (l + v).norm()
    r = roughness.clamp_min(MIN_ROUGHNESS)
    n_dot_l = (n * l).sum(1, keepdim=True).clamp_min(0.0)
    n_dot_v = (n * v).sum(1, keepdim=True).clamp_min(0.0)
    n_dot_h = (n * h).sum(1, keepdim=True)
    v_dot_h = (v * h).sum().clamp(0.0, 1.0)
    return ggx_radiance(base, r, metallic, n_dot_l, n_dot_v, n_dot_h, v_dot_h)


def hemisphere_directions(count: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """count,3 unit vectors with z > 0 (uniform over the upper hemisphere)."""
    d = torch.randn(count, 3, generator=generator)
    d[:, 2] = d[:, 2].abs() + 1e-3
    return (d / d.norm(dim=1, keepdim=True)).to(device)


def brdf_cosine(pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor], normal: torch.Tensor,
                n_dirs: int = 16, seed: int = 0) -> torch.Tensor:
    """Per-sample cosine similarity (N,) of the flattened GGX renders of two map sets.

    pred/target hold "albedo" (N3HW sRGB), "roughness" and "metallic" (N1HW); both are shaded with
    the same normal under the same `n_dirs` seeded light/view pairs from the upper hemisphere.
    1 means identical appearance up to a global brightness factor.
    """
    g = torch.Generator().manual_seed(seed)
    lights = hemisphere_directions(n_dirs, g)
    views = hemisphere_directions(n_dirs, g)
    dot = norm_p = norm_t = 0.0
    for light, view in zip(lights, views):
        rp = render_ggx(pred["albedo"], normal, pred["roughness"], pred["metallic"], light, view).flatten(1)
        rt = render_ggx(target["albedo"], normal, target["roughness"], target["metallic"], light, view).flatten(1)
        dot = dot + (rp * rt).sum(1)
        norm_p = norm_p + (rp * rp).sum(1)
        norm_t = norm_t + (rt * rt).sum(1)
    return dot / (norm_p * norm_t).sqrt().clamp_min(1e-12)


# ------------------------------------------------------------------------------- pixel metrics

def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean absolute error (N,)."""
    return (pred - target).abs().flatten(1).mean(1)


def rmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample root mean squared error (N,)."""
    return (pred - target).pow(2).flatten(1).mean(1).sqrt()


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-sample SSIM (N,) with a Gaussian window (Wang et al. 2004; C1, C2 for data range 1),
    averaged over channels and the valid (unpadded) window positions."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    coords = torch.arange(window, dtype=pred.dtype, device=pred.device) - (window - 1) / 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    channels = pred.shape[1]
    kernel = (g[:, None] * g[None, :]).expand(channels, 1, window, window).contiguous()

    def blur(x):
        return F.conv2d(x, kernel, groups=channels)

    mu_p, mu_t = blur(pred), blur(target)
    var_p = blur(pred * pred) - mu_p ** 2
    var_t = blur(target * target) - mu_t ** 2
    cov = blur(pred * target) - mu_p * mu_t
    s = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p ** 2 + mu_t ** 2 + c1) * (var_p + var_t + c2))
    return s.flatten(1).mean(1)


# ------------------------------------------------------------------------- mask and label metrics

def iou(pred_mask: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """Per-sample intersection over union (N,) of binary masks; 1 when both are empty."""
    p, t = pred_mask.flatten(1).bool(), target_mask.flatten(1).bool()
    inter = (p & t).sum(1).float()
    union = (p | t).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def pixel_accuracy(pred_mask: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """Per-sample fraction of pixels whose binary value agrees (N,)."""
    return (pred_mask.flatten(1).bool() == target_mask.flatten(1).bool()).float().mean(1)


def label_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample multi-label accuracy (N,): the fraction of classes whose sigmoid > 0.5 matches."""
    return ((logits > 0) == (labels > 0.5)).float().mean(1)


def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """AP of one class: mean precision at the rank of each positive (NaN without positives)."""
    order = scores.argsort(descending=True)
    hits = (labels[order] > 0.5).float()
    if hits.sum() == 0:
        return float("nan")
    precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1, device=hits.device)
    return float((precision * hits).sum() / hits.sum())


def mean_average_precision(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean AP over the classes that have at least one positive (NaN when none has)."""
    aps = [average_precision(logits[:, c], labels[:, c]) for c in range(labels.shape[1])]
    aps = [a for a in aps if not math.isnan(a)]
    return sum(aps) / len(aps) if aps else float("nan")


# ------------------------------------------------------------------------------------------ LPIPS

def alexnet_weights_path(path: str | Path | None = None) -> Path | None:
    """The AlexNet backbone file LPIPS needs: `path` if given, else torchvision's cache in
    $TORCH_HOME (torch.hub's checkpoints folder). None when it is not on disk."""
    if path is not None:
        return Path(path) if Path(path).is_file() else None
    candidate = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE
    return candidate if candidate.is_file() else None


class Lpips:
    """LPIPS (AlexNet) distance, or unavailable: never computed with a random backbone.

    `available` is False (and `reason` says why) when the AlexNet weights are not on disk; callers
    then report the metric as unavailable instead of a number.
    """

    def __init__(self, weights: str | Path | None = None, device=None):
        self.model = None
        found = alexnet_weights_path(weights)
        if found is None:
            where = weights or Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE
            self.reason = f"LPIPS unavailable: AlexNet weights not found at {where} (set $TORCH_HOME)"
            return
        import lpips
        model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
        backbone = torch.load(found, map_location="cpu", weights_only=True)
        features = {k[len("features."):]: v for k, v in backbone.items() if k.startswith("features.")}
        # lpips splits torchvision's alexnet.features into slice1..slice5 with the same layer indices.
        for module in model.net.children():
            module.load_state_dict({k: features[k] for k in module.state_dict()}, strict=True)
        self.model = model.eval().requires_grad_(False).to(device)
        self.reason = ""

    @property
    def available(self) -> bool:
        return self.model is not None

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample distance (N,) between images in [0, 1]; 1-channel maps are repeated to RGB."""
        if pred.shape[1] == 1:
            pred, target = pred.expand(-1, 3, -1, -1), target.expand(-1, 3, -1, -1)
        with torch.no_grad():
            return self.model(pred.float() * 2 - 1, target.float() * 2 - 1).flatten()
