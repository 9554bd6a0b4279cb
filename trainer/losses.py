"""Training losses: masked squared errors for the maps, GGX rendering loss, L1 for albedo, BCE/dice,
and the re-rendering consistency that lets old-game pairs without PBR truth train the albedo.

Masks come from the batch's `valid` flags (a target that is absent for a sample contributes
nothing). Every loss returns a scalar that is still attached to the prediction's graph when nothing
is valid (value 0), so `total.backward()` always works, and none asks the device whether anything
is valid: a mask that selects nothing makes a zero numerator over a clamped denominator, so the
training loop never waits on the GPU for a loss it has not asked to read (train.read_loss).

The maps are judged by RMSE on real materials (trainer/evaluate.py), so their loss is the squared
error, whose minimiser is the conditional mean: where metal is rare but plausible, a squared error
predicts "partly metal" and an L1 loss predicts "never metal" (the median), which is what collapsed
metallic to 0 before. Height is compared standardised per sample, as evaluation compares it: only
its shape matters, never its scale or offset.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.contract import MAP_CHANNELS, VALID_INDEX, map_plane
from trainer.metrics import hemisphere_directions, render_ggx, srgb_to_linear

RENDER_LOG_OFFSET = 0.01
RENDER_COSINE_WEIGHT = 1.0  # render loss = log L1 + RENDER_COSINE_WEIGHT * (1 - BRDF-cosine)
# Baked light counts as smooth at scales above 1/CONSISTENCY_SMOOTH_FRACTION of the texture's side.
CONSISTENCY_SMOOTH_FRACTION = 32


def _weighted_mean(weighted_sum: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """weighted_sum / total; 0 when total (a sum of non-negative weights) is 0, as weighted_sum then is."""
    return weighted_sum / total.clamp_min(torch.finfo(total.dtype).tiny)


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
              weight: torch.Tensor | None = None) -> torch.Tensor:
    """sum(w m |pred - target|) / sum(w m) over all elements; mask and weight broadcast to pred.

    Zero (attached to pred's graph) when the mask selects nothing.
    """
    w = mask.to(pred.dtype).expand_as(pred)
    if weight is not None:
        w = w * weight.to(pred.dtype).expand_as(pred)
    return _weighted_mean((w * (pred - target).abs()).sum(), w.sum())


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the elements mask (broadcast to pred) selects; 0 when it selects none."""
    w = mask.to(pred.dtype).expand_as(pred)
    return _weighted_mean((w * (pred - target) ** 2).sum(), w.sum())


def standardised(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Each sample's map (N,1,H,W) at zero mean and unit standard deviation."""
    centred = x - x.mean(dim=(1, 2, 3), keepdim=True)
    # eps inside the root: a flat map (an untrained height over a flat normal) has a finite gradient.
    return centred / (centred.pow(2).mean(dim=(1, 2, 3), keepdim=True) + eps * eps).sqrt()


def maps_loss(pred_maps: torch.Tensor, target_maps: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Masked squared error of the four maps (height standardised per sample), each channel normalised on
    its own, then averaged over the channels that have any valid sample (so a batch without AO targets
    does not dilute the rest)."""
    losses, present = [], []
    for name in MAP_CHANNELS:
        mask = valid[:, VALID_INDEX[name]].view(-1, 1, 1, 1)
        pred, target = map_plane(pred_maps, name), map_plane(target_maps, name)
        if name == "height":
            pred, target = standardised(pred), standardised(target)
        losses.append(masked_mse(pred, target, mask))
        present.append((mask.sum() > 0).to(pred_maps.dtype))
    present = torch.stack(present)
    return (torch.stack(losses) * present).sum() / present.sum().clamp_min(1.0)


def render_loss(albedo: torch.Tensor, normal: torch.Tensor, pred_maps: torch.Tensor, target_maps: torch.Tensor,
                mask: torch.Tensor, n_dirs: int = 8, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean |log(render_pred + 0.01) - log(render_true + 0.01)| over n_dirs light/view pairs, plus
    RENDER_COSINE_WEIGHT times 1 - the cosine of each sample's flattened renders.

    Both renders use the same (true) albedo and normal, so the loss grades roughness and metallic by
    their visible effect. Half of the pairs put the light at the view's mirror direction (jittered),
    where the GGX highlight - the part roughness controls - is visible; the log keeps the highlight
    from drowning the diffuse term. The cosine term is the evaluation's BRDF-cosine, which weighs
    pixels by their rendered energy: the log term alone lets a wrongly glossy or metal guess cost
    little, while its highlight dominates the cosine (a glossy tile sank the held-out BRDF-cosine below
    doing nothing). mask (N,1,1,1) selects samples with albedo, roughness and metallic.
    """
    views = hemisphere_directions(n_dirs, generator, pred_maps.device)
    lights = hemisphere_directions(n_dirs, generator, pred_maps.device)
    mirrored = views * torch.tensor([-1.0, -1.0, 1.0], device=views.device) + 0.2 * lights
    half = n_dirs // 2
    lights = torch.cat([lights[:n_dirs - half], mirrored[n_dirs - half:]])
    lights = lights / lights.norm(dim=1, keepdim=True)
    albedo, normal = albedo.float(), normal.float()
    pred_maps, target_maps = pred_maps.float(), target_maps.float()
    loss = dot = norm_pred = norm_true = 0.0
    for light, view in zip(lights, views):
        pred = render_ggx(albedo, normal, map_plane(pred_maps, "roughness"), map_plane(pred_maps, "metallic"),
                          light, view)
        true = render_ggx(albedo, normal, map_plane(target_maps, "roughness"), map_plane(target_maps, "metallic"),
                          light, view)
        diff = torch.log(pred + RENDER_LOG_OFFSET) - torch.log(true + RENDER_LOG_OFFSET)
        loss = loss + masked_l1(diff, torch.zeros_like(diff), mask)
        dot = dot + (pred * true).flatten(1).sum(1)
        norm_pred = norm_pred + pred.pow(2).flatten(1).sum(1)
        norm_true = norm_true + true.pow(2).flatten(1).sum(1)
    # eps inside the root: a black render (all samples masked out) keeps a finite gradient.
    cosine = dot / (norm_pred * norm_true + 1e-12).sqrt()
    sample_mask = mask.flatten().to(cosine.dtype)
    cosine_loss = _weighted_mean(((1.0 - cosine) * sample_mask).sum(), sample_mask.sum())
    return loss / n_dirs + RENDER_COSINE_WEIGHT * cosine_loss


def periodic_smooth(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Two passes of a (2 radius + 1)-pixel box blur with wrap-around (textures tile): nearly Gaussian."""
    for _ in range(2):
        x = F.avg_pool2d(F.pad(x, (radius,) * 4, mode="circular"), 2 * radius + 1, stride=1)
    return x


def consistency_loss(diffuse: torch.Tensor, albedo: torch.Tensor, ao: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Re-rendering consistency for samples without a true albedo (real old-game pairs).

    An old game's diffuse is, per channel, albedo x occlusion x baked light and tint; light and tint
    vary smoothly, so log(diffuse) - log(albedo x AO) must be smooth too. The loss is the L1 of that
    log-ratio's detail (minus its periodic blur): the prediction may remove smooth shading and a cast,
    not invent or erase fine structure the input shows. diffuse/albedo N3HW sRGB, ao N1HW, mask N111.
    """
    # UNet-Maps' AO head is unbounded in training (conversion clips it): clip it here too, or a
    # negative AO puts a NaN in the log that even a masked-out sample spreads to the whole loss.
    ratio = (torch.log(srgb_to_linear(diffuse.float()) + RENDER_LOG_OFFSET)
             - torch.log(srgb_to_linear(albedo.float()) * ao.float().clamp(0.0, 1.0) + RENDER_LOG_OFFSET))
    radius = max(1, min(ratio.shape[-2:]) // CONSISTENCY_SMOOTH_FRACTION)
    detail = ratio - periodic_smooth(ratio, radius)
    return masked_l1(detail, torch.zeros_like(detail), mask)


def masked_bce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits averaged over the elements mask selects (mask broadcasts to logits)."""
    per_element = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    w = mask.to(per_element.dtype).expand_as(per_element)
    return _weighted_mean((w * per_element).sum(), w.sum())


def masked_dice(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per sample (smoothed by eps, so an all-background sample predicted empty scores 0),
    averaged over the samples mask (N,) selects."""
    prob = torch.sigmoid(logits.float()).flatten(1)
    target = target.float().flatten(1)
    dice = (2 * (prob * target).sum(1) + eps) / (prob.sum(1) + target.sum(1) + eps)
    m = mask.to(prob.dtype)
    return _weighted_mean(((1 - dice) * m).sum(), m.sum())
