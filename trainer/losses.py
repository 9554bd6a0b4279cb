"""Training losses: masked L1 with material-relevance weights, GGX rendering loss, BCE/dice.

Masks come from the batch's `valid` flags (a target that is absent for a sample contributes
nothing) and from the relevance weights below. Every loss returns a scalar that is still attached
to the prediction's graph when nothing is valid (value 0), so `total.backward()` always works.

Relevance weights (per pixel, multiplied with the validity mask; why each exists):
- roughness: 1 everywhere.
- metallic: 1 + METAL_WEIGHT where the pixel is metal (GT metallic > 0.5, or the metallic mask,
  or the sample is labelled `metal`). Metal covers a few percent of pixels, so an unweighted loss
  is nearly minimised by "never metal"; the weight makes a missed metal pixel cost several times a
  false alarm.
- ao: 1 + AO_CAVITY_WEIGHT * (1 - GT ao). Most of an AO map is ~1; the information is in the
  occluded crevices, which an unweighted L1 lets the model flatten.
- height: 1 + HEIGHT_RELIEF_WEIGHT * 2|GT height - 0.5|. Bumps and grooves away from the mid
  level carry the relief; flat mid-level areas are easy and would dominate otherwise.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.contract import MAP_CHANNELS, MATERIAL_CLASSES, VALID_INDEX
from trainer.metrics import hemisphere_directions, render_ggx

METAL_WEIGHT = 4.0
AO_CAVITY_WEIGHT = 2.0
HEIGHT_RELIEF_WEIGHT = 1.0
RENDER_LOG_OFFSET = 0.01
METAL_CLASS = MATERIAL_CLASSES.index("metal")


def _zero(pred: torch.Tensor) -> torch.Tensor:
    return pred.sum() * 0.0


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
              weight: torch.Tensor | None = None) -> torch.Tensor:
    """sum(w m |pred - target|) / sum(w m) over all elements; mask and weight broadcast to pred.

    Zero (attached to pred's graph) when the mask selects nothing.
    """
    w = mask.to(pred.dtype).expand_as(pred)
    if weight is not None:
        w = w * weight.to(pred.dtype).expand_as(pred)
    total = w.sum()
    if total <= 0:
        return _zero(pred)
    return (w * (pred - target).abs()).sum() / total


def map_relevance(target_maps: torch.Tensor, metallic_mask: torch.Tensor, labels: torch.Tensor,
                  valid: torch.Tensor) -> torch.Tensor:
    """N,4,H,W per-pixel weights for UNet-Maps' channels (see the module docstring).

    valid is the batch's N,7 flags; the metallic mask and labels count only where they are valid.
    """
    n = target_maps.shape[0]
    rough, metal, ao, height = target_maps.unbind(1)
    is_metal = metal > 0.5
    mask_valid = valid[:, VALID_INDEX["metallic_mask"]].view(n, 1, 1) > 0
    is_metal = is_metal | (mask_valid & (metallic_mask[:, 0] > 0.5))
    labelled_metal = (valid[:, VALID_INDEX["labels"]] > 0) & (labels[:, METAL_CLASS] > 0.5)
    is_metal = is_metal | labelled_metal.view(n, 1, 1)
    weights = torch.stack([
        torch.ones_like(rough),
        1.0 + METAL_WEIGHT * is_metal.to(target_maps.dtype),
        1.0 + AO_CAVITY_WEIGHT * (1.0 - ao),
        1.0 + HEIGHT_RELIEF_WEIGHT * 2.0 * (height - 0.5).abs(),
    ], dim=1)
    return weights


def maps_l1(pred_maps: torch.Tensor, target_maps: torch.Tensor, metallic_mask: torch.Tensor,
            labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Relevance-weighted masked L1 of the four maps, each channel normalised on its own then averaged
    over the channels that have any valid sample (so a batch without AO targets does not dilute the rest)."""
    weights = map_relevance(target_maps, metallic_mask, labels, valid)
    losses = []
    for c, name in enumerate(MAP_CHANNELS):
        mask = valid[:, VALID_INDEX[name]].view(-1, 1, 1, 1)
        if mask.sum() > 0:
            losses.append(masked_l1(pred_maps[:, c:c + 1], target_maps[:, c:c + 1], mask, weights[:, c:c + 1]))
    return torch.stack(losses).mean() if losses else _zero(pred_maps)


def render_loss(albedo: torch.Tensor, normal: torch.Tensor, pred_maps: torch.Tensor, target_maps: torch.Tensor,
                mask: torch.Tensor, n_dirs: int = 8, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean |log(render_pred + 0.01) - log(render_true + 0.01)| over n_dirs light/view pairs.

    Both renders use the same (true) albedo and normal, so the loss grades roughness and metallic by
    their visible effect. Half of the pairs put the light at the view's mirror direction (jittered),
    where the GGX highlight - the part roughness controls - is visible; the log keeps the highlight
    from drowning the diffuse term. mask (N,1,1,1) selects samples with albedo, roughness and metallic.
    """
    if mask.sum() <= 0:
        return _zero(pred_maps)
    views = hemisphere_directions(n_dirs, generator, pred_maps.device)
    lights = hemisphere_directions(n_dirs, generator, pred_maps.device)
    mirrored = views * torch.tensor([-1.0, -1.0, 1.0], device=views.device) + 0.2 * lights
    half = n_dirs // 2
    lights = torch.cat([lights[:n_dirs - half], mirrored[n_dirs - half:]])
    lights = lights / lights.norm(dim=1, keepdim=True)
    albedo, normal = albedo.float(), normal.float()
    pred_maps, target_maps = pred_maps.float(), target_maps.float()
    loss = 0.0
    for light, view in zip(lights, views):
        pred = render_ggx(albedo, normal, pred_maps[:, 0:1], pred_maps[:, 1:2], light, view)
        true = render_ggx(albedo, normal, target_maps[:, 0:1], target_maps[:, 1:2], light, view)
        diff = torch.log(pred + RENDER_LOG_OFFSET) - torch.log(true + RENDER_LOG_OFFSET)
        loss = loss + masked_l1(diff, torch.zeros_like(diff), mask)
    return loss / n_dirs


def masked_bce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits averaged over the elements mask selects (mask broadcasts to logits)."""
    w = mask.to(logits.dtype).expand_as(logits)
    if w.sum() <= 0:
        return _zero(logits)
    per_element = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return (w * per_element).sum() / w.sum()


def masked_dice(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per sample (smoothed by eps, so an all-background sample predicted empty scores 0),
    averaged over the samples mask (N,) selects."""
    if mask.sum() <= 0:
        return _zero(logits)
    prob = torch.sigmoid(logits.float()).flatten(1)
    target = target.float().flatten(1)
    dice = (2 * (prob * target).sum(1) + eps) / (prob.sum(1) + target.sum(1) + eps)
    m = mask.to(prob.dtype)
    return ((1 - dice) * m).sum() / m.sum()
