"""What each model is trained on, and how a model set is evaluated.

The four models form the conversion chain of the add-on:
    albedo = UNet-Albedo(diffuse, normal, specular)
    logits, patch_logits = ViT(albedo resized to 224 x 224)
    metallic_logit = SegFormer(albedo shrunk to the context size, wrap-padded; logits cropped back)
    maps = UNet-Maps(albedo, normal, build_condition(patch_logits, metallic_logit), specular, height_prior)
where specular (the normal map's alpha and a presence flag) and height_prior (integrated normals) are
computed by addon/engine/priors.py, in the batch as in the add-on, and the context models' inputs are
made by addon/engine/context.py, in training as in the add-on.

Training (compute_losses) cuts the chain with teacher forcing: the context models and UNet-Maps see
the *true* albedo where the sample has one (the predicted, detached albedo otherwise), and UNet-Maps
sees the context models' detached outputs, so every model learns its own task on clean inputs and
gradients never cross model boundaries. Samples without a true albedo (real old-game pairs) train
UNet-Albedo by re-rendering consistency instead (losses.consistency_loss, with UNet-Maps' AO detached).
Evaluation (evaluate) reports the metrics of the real chain
(predicted albedo and context, as the add-on runs it) and val_loss = the teacher-forced total loss.

Batch dicts follow docs/architecture.md; valid[:, i] flags targets in trainer.contract.VALID_TARGETS
order: albedo, roughness, metallic, ao, height, metallic_mask, labels.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from addon.engine import context
from trainer.contract import CLASSIFIER_INPUT_SIZE, CONTEXT_MAX_SIDE, MAP_CHANNELS, UNET_MULTIPLE, VALID_INDEX, map_plane
from trainer.contract import PIPELINE_ORDER as MODEL_NAMES  # the trainer's model names
from trainer.losses import consistency_loss, maps_loss, masked_bce, masked_dice, masked_l1, render_loss
from trainer.metrics import (Lpips, brdf_cosine, iou, l1, label_accuracy, mean_average_precision, pixel_accuracy,
                             rmse, ssim)

RENDER_WEIGHT = 0.5     # maps loss = squared error + RENDER_WEIGHT * render loss
DICE_WEIGHT = 1.0       # SegFormer loss = BCE + DICE_WEIGHT * dice
CONSISTENCY_WEIGHT = 0.5  # albedo loss = L1 to the truth + CONSISTENCY_WEIGHT * consistency where there is none


# ----------------------------------------------------------------------------- context inputs

def _resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """context.Resize for training: torch's antialiased bilinear (Pillow's filter, as the add-on)."""
    return F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False, antialias=True)


def classifier_input(albedo: torch.Tensor) -> torch.Tensor:
    """The albedo squashed to the ViT's fixed square input, as the add-on gives it (addon/engine/context.py)."""
    return _resize(albedo, CLASSIFIER_INPUT_SIZE, CLASSIFIER_INPUT_SIZE)


def segment(segmenter: nn.Module, albedo: torch.Tensor) -> torch.Tensor:
    """SegFormer's metallic logits at its context size, fed as the add-on feeds it (shrunk, wrap-padded,
    cropped back: addon/engine/context.py)."""
    return context.segment(segmenter, albedo, CONTEXT_MAX_SIDE["metallic_seg"], UNET_MULTIPLE, _resize)


def build_condition(patch_logits: torch.Tensor, seg_logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """UNet-Maps' N,14,H,W condition: the 13 per-patch material logits and the metallic logit, each
    bilinearly resampled to size (contract.CONDITION_CHANNELS order)."""
    def resample(x):
        return F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)
    return torch.cat([resample(patch_logits), resample(seg_logits)], dim=1)


def _grad(enabled: bool):
    return contextlib.nullcontext() if enabled else torch.no_grad()


def _mask(valid: torch.Tensor, name: str) -> torch.Tensor:
    return valid[:, VALID_INDEX[name]].view(-1, 1, 1, 1)


# --------------------------------------------------------------------------------------- losses

def compute_losses(models: nn.ModuleDict, batch: dict[str, torch.Tensor], active: set[str]) -> dict[str, torch.Tensor]:
    """Per-model losses of the `active` models and their sum "total" (each model's loss weighs 1).

    Only active models build a graph; the others run under no_grad when their outputs are needed
    (UNet-Maps' condition, or the albedo of samples without a true one).
    """
    unknown = set(active) - set(MODEL_NAMES)
    if unknown or not active:
        raise ValueError(f"active must be a non-empty subset of {MODEL_NAMES}, got {sorted(active)}")
    diffuse, normal, valid = batch["diffuse"], batch["normal"], batch["valid"]
    # Which models run is decided on the host copy of the flags (train._to_device), not by asking
    # the device: that would wait for the GPU on every micro-batch.
    host_valid = np.asarray(batch["valid_host"]) if "valid_host" in batch else valid.cpu().numpy()
    albedo_valid = _mask(valid, "albedo")
    every_albedo_true = bool(host_valid[:, VALID_INDEX["albedo"]].all())
    # The consistency of a predicted albedo needs UNet-Maps' AO, so the chain runs on for it.
    needs_consistency = "albedo" in active and not every_albedo_true
    needs_maps = "maps" in active or needs_consistency
    needs_albedo_input = bool(active & {"classifier", "metallic_seg"}) or needs_maps
    losses: dict[str, torch.Tensor] = {}

    pred_albedo = None
    if "albedo" in active or (needs_albedo_input and not every_albedo_true):
        with _grad("albedo" in active):
            pred_albedo = models["albedo"](diffuse, normal, batch["specular"])
        if "albedo" in active:
            losses["albedo"] = masked_l1(pred_albedo.float(), batch["albedo"], albedo_valid)
    if not needs_albedo_input:
        return _with_total(losses)
    # Teacher forcing: the true albedo where there is one.
    albedo_in = batch["albedo"] if pred_albedo is None else \
        torch.where(albedo_valid > 0, batch["albedo"], pred_albedo.detach().to(batch["albedo"].dtype))

    patch_logits = seg_logits = None
    if "classifier" in active or needs_maps:
        with _grad("classifier" in active):
            logits, patch_logits = models["classifier"](classifier_input(albedo_in))
        if "classifier" in active:
            losses["classifier"] = masked_bce(logits, batch["labels"], valid[:, VALID_INDEX["labels"]].view(-1, 1))
    if "metallic_seg" in active or needs_maps:
        with _grad("metallic_seg" in active):
            seg_logits = segment(models["metallic_seg"], albedo_in)
        if "metallic_seg" in active:
            target = batch["metallic_mask"]
            if target.shape[-2:] != seg_logits.shape[-2:]:
                target = F.interpolate(target, size=seg_logits.shape[-2:], mode="area")  # soft target
            mask_valid = _mask(valid, "metallic_mask")
            losses["metallic_seg"] = (masked_bce(seg_logits, target, mask_valid)
                                      + DICE_WEIGHT * masked_dice(seg_logits, target, mask_valid.flatten()))
    if not needs_maps:
        return _with_total(losses)
    condition = build_condition(patch_logits.detach(), seg_logits.detach(), tuple(diffuse.shape[-2:]))
    with _grad("maps" in active):
        pred_maps = models["maps"](albedo_in, normal, condition, batch["specular"], batch["height_prior"]).float()
    if needs_consistency:
        losses["albedo"] = losses["albedo"] + CONSISTENCY_WEIGHT * consistency_loss(
            diffuse, pred_albedo, map_plane(pred_maps, "ao").detach(), 1 - albedo_valid)
    if "maps" in active:
        target = batch["maps"]
        losses["maps"] = maps_loss(pred_maps, target, valid)
        if host_valid[:, [VALID_INDEX[k] for k in ("albedo", "roughness", "metallic")]].all(axis=1).any():
            render_mask = albedo_valid * _mask(valid, "roughness") * _mask(valid, "metallic")
            losses["maps"] = losses["maps"] + RENDER_WEIGHT * render_loss(batch["albedo"], normal, pred_maps,
                                                                          target, render_mask)
    return _with_total(losses)


def _with_total(losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The per-model losses and their sum, "total" (each model's loss weighs 1)."""
    losses["total"] = sum(losses[name] for name in MODEL_NAMES if name in losses)
    return losses


# ----------------------------------------------------------------------------------- inference

@torch.no_grad()
def predict(models: nn.ModuleDict, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The add-on's chain on a batch (no teacher forcing): albedo, material logits (N,13 and
    per-patch), metallic logits at input size and the four maps, all float32."""
    diffuse, normal, specular = batch["diffuse"], batch["normal"], batch["specular"]
    albedo = models["albedo"](diffuse, normal, specular).float()
    logits, patch_logits = models["classifier"](classifier_input(albedo))
    seg_logits = segment(models["metallic_seg"], albedo)
    condition = build_condition(patch_logits, seg_logits, tuple(diffuse.shape[-2:]))
    maps = models["maps"](albedo, normal, condition, specular, batch["height_prior"]).float()
    metallic_logits = F.interpolate(seg_logits.float(), size=diffuse.shape[-2:], mode="bilinear", align_corners=False)
    return {"albedo": albedo, "material_logits": logits.float(), "patch_logits": patch_logits.float(),
            "metallic_logits": metallic_logits, "maps": maps}


class _Mean:
    """Running means of per-sample values, counted only where a mask says the target exists."""

    def __init__(self):
        self.sums, self.counts = {}, {}

    def add(self, key: str, values: torch.Tensor, mask: torch.Tensor) -> None:
        mask = mask.flatten().to(values.device) > 0
        if mask.any():
            self.sums[key] = self.sums.get(key, 0.0) + float(values.flatten()[mask].double().sum())
            self.counts[key] = self.counts.get(key, 0) + int(mask.sum())

    def result(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}


def evaluate(models: nn.ModuleDict, loader, device, max_batches: int | None = None,
             lpips: Lpips | None = None) -> dict[str, float]:
    """Metrics of the add-on's chain per model and map, and val_loss (teacher-forced total loss,
    the scalar to gate and early-stop on). Models are used as given (call .eval() first).

    Keys: albedo/{l1,rmse,ssim[,lpips]}, maps/<map>/{l1,rmse,ssim[,lpips]}, maps/brdf_cosine,
    metallic_seg/{iou,accuracy}, classifier/{accuracy,mean_ap}, val_loss. A metric whose target
    no sample has is left out. LPIPS appears only when its AlexNet weights are on disk
    (`lpips` given and available); "lpips_unavailable" = 1.0 says it was skipped.
    """
    means = _Mean()
    all_logits, all_labels = [], []
    loss_sum, loss_batches = 0.0, 0
    for index, batch in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            break
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        valid = batch["valid"]
        with torch.no_grad():
            loss_sum += float(compute_losses(models, batch, set(MODEL_NAMES))["total"])
        loss_batches += 1
        pred = predict(models, batch)
        albedo_valid = valid[:, VALID_INDEX["albedo"]]
        _image_metrics(means, "albedo", pred["albedo"], batch["albedo"].float(), albedo_valid, lpips)
        for name in MAP_CHANNELS:
            _image_metrics(means, f"maps/{name}", map_plane(pred["maps"], name), map_plane(batch["maps"], name).float(),
                           valid[:, VALID_INDEX[name]], lpips)
        brdf_valid = albedo_valid * valid[:, VALID_INDEX["roughness"]] * valid[:, VALID_INDEX["metallic"]]
        target = {"albedo": batch["albedo"].float(),
                  **{name: map_plane(batch["maps"], name).float() for name in ("roughness", "metallic")}}
        predicted = {"albedo": pred["albedo"], **{name: map_plane(pred["maps"], name) for name in ("roughness", "metallic")}}
        means.add("maps/brdf_cosine", brdf_cosine(predicted, target, batch["normal"].float()), brdf_valid)
        mask_valid = valid[:, VALID_INDEX["metallic_mask"]]
        pred_mask, true_mask = pred["metallic_logits"] > 0, batch["metallic_mask"] > 0.5
        means.add("metallic_seg/iou", iou(pred_mask, true_mask), mask_valid)
        means.add("metallic_seg/accuracy", pixel_accuracy(pred_mask, true_mask), mask_valid)
        labels_valid = valid[:, VALID_INDEX["labels"]]
        means.add("classifier/accuracy", label_accuracy(pred["material_logits"], batch["labels"]), labels_valid)
        keep = labels_valid > 0
        all_logits.append(pred["material_logits"][keep].cpu())
        all_labels.append(batch["labels"][keep].float().cpu())
    result = means.result()
    if all_logits and sum(len(x) for x in all_logits):
        mean_ap = mean_average_precision(torch.cat(all_logits), torch.cat(all_labels))
        if not math.isnan(mean_ap):
            result["classifier/mean_ap"] = mean_ap
    if lpips is None or not lpips.available:
        result["lpips_unavailable"] = 1.0
    result["val_loss"] = loss_sum / max(loss_batches, 1)
    return result


def _image_metrics(means: _Mean, key: str, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                   lpips: Lpips | None) -> None:
    means.add(f"{key}/l1", l1(pred, target), valid)
    means.add(f"{key}/rmse", rmse(pred, target), valid)
    if min(pred.shape[-2:]) >= 11:
        means.add(f"{key}/ssim", ssim(pred, target), valid)
    if lpips is not None and lpips.available and bool((valid > 0).any()):
        means.add(f"{key}/lpips", lpips(pred, target), valid)
