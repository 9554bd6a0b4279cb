"""Losses, metrics, the GGX renderer (against the add-on's numpy twin) and the objective."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from addon.engine.colour import linear_to_srgb
from trainer.contract import VALID_INDEX
from trainer.losses import (consistency_loss, maps_loss, masked_bce, masked_dice, masked_l1, masked_mse,
                            periodic_smooth, render_loss)
from trainer.metrics import (Lpips, brdf_cosine, iou, mean_average_precision, render_ggx, ssim)
from trainer.models import ModelsConfig, create_models
from trainer.objective import compute_losses, evaluate


def _normal(n, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, 3, h, w, generator=g)
    v[:, 2] = v[:, 2].abs() + 0.5
    return v / v.norm(dim=1, keepdim=True)


def _batch(n=2, h=64, w=64, seed=0, valid=None):
    g = torch.Generator().manual_seed(seed)
    return {
        "diffuse": torch.rand(n, 3, h, w, generator=g), "normal": _normal(n, h, w, seed),
        "specular": torch.cat([torch.rand(n, 1, h, w, generator=g), torch.ones(n, 1, h, w)], dim=1),
        "height_prior": torch.rand(n, 1, h, w, generator=g),
        "albedo": torch.rand(n, 3, h, w, generator=g), "maps": torch.rand(n, 4, h, w, generator=g),
        "metallic_mask": (torch.rand(n, 1, h, w, generator=g) > 0.7).float(),
        "labels": (torch.rand(n, 13, generator=g) > 0.7).float(),
        "valid": torch.ones(n, 7) if valid is None else valid,
        "domain": torch.zeros(n, dtype=torch.long), "photometric": torch.zeros(n),
    }


def test_masked_l1_on_hand_computed_cases():
    pred = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]])
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    mask = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])
    assert masked_l1(pred, target, mask).item() == pytest.approx((1 + 0 + 0.5) / 3)
    weight = torch.tensor([[[[3.0, 1.0], [1.0, 1.0]]]])
    assert masked_l1(pred, target, mask, weight).item() == pytest.approx((3 + 0 + 0.5) / 5)
    # A per-sample mask (N,1,1,1) drops whole samples.
    two = torch.cat([pred, pred + 1])
    assert masked_l1(two, torch.cat([target, target]), torch.tensor([0.0, 1.0]).view(2, 1, 1, 1)).item() \
        == pytest.approx(float((pred + 1 - target).abs().mean()))


def test_losses_with_nothing_valid_are_zero_and_still_backpropagate():
    pred = torch.rand(2, 1, 4, 4, requires_grad=True)
    for loss in (masked_l1(pred, torch.rand(2, 1, 4, 4), torch.zeros(2, 1, 1, 1)),
                 masked_bce(pred, torch.rand(2, 1, 4, 4), torch.zeros(2, 1, 1, 1)),
                 masked_dice(pred, torch.rand(2, 1, 4, 4), torch.zeros(2)),
                 maps_loss(pred.expand(2, 4, 4, 4), torch.rand(2, 4, 4, 4), torch.zeros(2, len(VALID_INDEX))),
                 render_loss(torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4), pred.expand(2, 4, 4, 4),
                             torch.rand(2, 4, 4, 4), torch.zeros(2, 1, 1, 1))):
        assert loss.item() == 0.0
        loss.backward()


def test_losses_never_read_a_value_back_from_the_device():
    # On the meta device a tensor has no values: any `if mask.sum() <= 0` (a host sync per micro-batch
    # on a GPU) raises here, as does anything else that reads a loss' data back to decide.
    meta = {"device": "meta"}
    maps, target = torch.rand(2, 4, 8, 8, **meta), torch.rand(2, 4, 8, 8, **meta)
    valid = torch.ones(2, len(VALID_INDEX), **meta)
    mask = torch.ones(2, 1, 1, 1, **meta)
    logits = torch.rand(2, 1, 8, 8, **meta)
    for loss in (maps_loss(maps, target, valid), masked_l1(logits, logits, mask), masked_mse(logits, logits, mask),
                 masked_bce(logits, logits, mask), masked_dice(logits, logits, mask.flatten()),
                 render_loss(torch.rand(2, 3, 8, 8, **meta), torch.rand(2, 3, 8, 8, **meta), maps, target, mask)):
        assert loss.device.type == "meta" and loss.dim() == 0


def test_maps_loss_averages_only_the_maps_some_sample_has():
    pred, target = torch.zeros(2, 4, 4, 4), torch.ones(2, 4, 4, 4)
    valid = torch.zeros(2, len(VALID_INDEX))
    valid[0, VALID_INDEX["roughness"]] = 1.0  # one map, one sample: its error alone, not diluted by the rest
    assert maps_loss(pred, target, valid).item() == pytest.approx(1.0)
    assert maps_loss(pred, target, torch.zeros_like(valid)).item() == 0.0


def test_maps_loss_is_minimised_by_the_mean_so_rare_metal_is_not_rounded_to_zero():
    # One pixel in four is metal. Under L1 "never metal" (0) and "a quarter metal" (0.25) tie at best;
    # the squared error the maps are trained with prefers 0.25, the RMSE-optimal answer.
    target = torch.zeros(1, 4, 2, 2)
    target[0, 1, 0, 0] = 1.0
    valid = torch.zeros(1, 7)
    valid[0, VALID_INDEX["metallic"]] = 1.0             # only metallic is known
    never, quarter = torch.zeros_like(target), torch.zeros_like(target)
    quarter[:, 1] = 0.25
    assert maps_loss(quarter, target, valid) < maps_loss(never, target, valid)
    assert maps_loss(quarter, target, valid).item() == pytest.approx(masked_mse(quarter[:, 1:2], target[:, 1:2],
                                                                                torch.ones(1, 1, 1, 1)).item())


def test_height_loss_ignores_scale_and_offset_but_not_shape():
    g = torch.Generator().manual_seed(0)
    target = torch.zeros(2, 4, 8, 8)
    target[:, 3] = torch.rand(2, 8, 8, generator=g)
    valid = torch.zeros(2, 7)
    valid[:, VALID_INDEX["height"]] = 1.0               # only height is known
    rescaled = target.clone()
    rescaled[:, 3] = 0.3 + 0.1 * target[:, 3]
    assert maps_loss(rescaled, target, valid).item() == pytest.approx(0.0, abs=1e-6)
    inverted = target.clone()
    inverted[:, 3] = 1 - target[:, 3]
    assert maps_loss(inverted, target, valid).item() == pytest.approx(4.0, rel=1e-3)  # z vs -z: (2z)^2


def test_render_loss_is_zero_for_true_maps_and_grows_with_roughness_error():
    b = _batch(1, 32, 32)
    mask = torch.ones(1, 1, 1, 1)
    same = render_loss(b["albedo"], b["normal"], b["maps"], b["maps"], mask, generator=torch.Generator().manual_seed(0))
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    losses = []
    for delta in (0.1, 0.4):
        wrong = b["maps"].clone()
        wrong[:, 0] = (wrong[:, 0] + delta).clamp(0, 1)
        losses.append(render_loss(b["albedo"], b["normal"], wrong, b["maps"], mask,
                                  generator=torch.Generator().manual_seed(0)).item())
    assert 0 < losses[0] < losses[1]


def test_render_loss_punishes_a_wrongly_glossy_guess_as_the_brdf_cosine_does():
    # The BRDF-cosine weighs pixels by rendered energy: guessing glossy on a rough dielectric puts a
    # highlight where there is none (cosine 0.95 here) while guessing rougher by as much barely shows
    # (0.998). The loss must rank them as decisively; the log term alone costs them 0.069 and 0.058.
    b = _batch(1, 32, 32)
    target = b["maps"].clone()
    target[:, 0], target[:, 1] = 0.6, 0.0
    losses = {}
    for guess, roughness in (("glossy", 0.3), ("rough", 0.9)):
        wrong = target.clone()
        wrong[:, 0] = roughness
        losses[guess] = render_loss(b["albedo"], b["normal"], wrong, target, torch.ones(1, 1, 1, 1),
                                    generator=torch.Generator().manual_seed(0)).item()
    assert losses["glossy"] > 2 * losses["rough"] > 0


def _srgb(linear: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(linear_to_srgb(linear.numpy()))


def test_consistency_accepts_smooth_shading_and_a_cast_but_not_lost_or_invented_detail():
    g = torch.Generator().manual_seed(0)
    albedo_linear = 0.2 + 0.6 * torch.rand(1, 3, 64, 64, generator=g)
    ao = 0.5 + 0.5 * torch.rand(1, 1, 64, 64, generator=g)
    rows = torch.linspace(0, 2 * torch.pi, 65)[:-1]
    light = (0.8 + 0.2 * torch.sin(rows)).view(1, 1, 64, 1) * torch.tensor([1.0, 0.9, 0.7]).view(1, 3, 1, 1)
    diffuse = _srgb(albedo_linear * ao * light)       # an old game's bake: occlusion, smooth light, a tint
    mask = torch.ones(1, 1, 1, 1)
    exact = consistency_loss(diffuse, _srgb(albedo_linear), ao, mask)
    flat = consistency_loss(diffuse, _srgb(albedo_linear.mean((2, 3), keepdim=True).expand_as(albedo_linear)), ao, mask)
    noisy = consistency_loss(diffuse, _srgb(albedo_linear * (0.7 + 0.6 * torch.rand(1, 3, 64, 64, generator=g))), ao, mask)
    assert exact.item() < 0.01
    assert flat.item() > 20 * exact.item() and noisy.item() > 20 * exact.item()
    assert consistency_loss(diffuse, _srgb(albedo_linear), ao, torch.zeros(1, 1, 1, 1)).item() == 0.0


def test_consistency_stays_finite_where_the_untrained_ao_head_goes_below_zero():
    # UNet-Maps' AO is white minus an unbounded correction; a negative AO in a sample the mask
    # leaves out once turned a whole batch's loss into NaN (run 11, phase B).
    diffuse = torch.full((2, 3, 32, 32), 0.5)
    ao = torch.ones(2, 1, 32, 32)
    ao[0, :, :8] = -0.2
    albedo = torch.full((2, 3, 32, 32), 0.5, requires_grad=True)
    loss = consistency_loss(diffuse, albedo, ao, torch.tensor([0.0, 1.0]).view(2, 1, 1, 1))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(albedo.grad).all()
    assert loss.item() < 1e-4  # the selected sample re-renders its diffuse exactly

def test_periodic_smooth_keeps_the_mean_and_wraps_around():
    x = torch.zeros(1, 1, 16, 16)
    x[..., 0, 0] = 1.0
    smooth = periodic_smooth(x, 2)
    assert smooth.sum().item() == pytest.approx(1.0)
    assert smooth[..., -1, -1].item() == pytest.approx(smooth[..., 1, 1].item())   # the corner's spread wraps


def test_brdf_cosine_is_one_for_identical_maps_and_decreases_with_perturbation():
    b = _batch(2, 32, 32)
    maps = {"albedo": b["albedo"], "roughness": b["maps"][:, 0:1], "metallic": b["maps"][:, 1:2]}
    assert torch.allclose(brdf_cosine(maps, maps, b["normal"]), torch.ones(2), atol=1e-6)
    previous = 1.0
    g = torch.Generator().manual_seed(3)
    noise = {k: torch.rand(v.shape, generator=g) for k, v in maps.items()}
    for strength in (0.1, 0.3, 0.6):
        perturbed = {k: (1 - strength) * v + strength * noise[k] for k, v in maps.items()}
        value = float(brdf_cosine(perturbed, maps, b["normal"]).mean())
        assert value < previous
        previous = value


def test_torch_ggx_matches_the_addon_numpy_ggx():
    from addon.engine import brdf

    b = _batch(1, 16, 16, seed=5)
    roughness, metallic = b["maps"][:, 0:1], b["maps"][:, 1:2]
    for light, view in (([0.3, 0.2, 0.9], [-0.1, 0.4, 0.8]), ([0.0, 0.0, 1.0], [0.0, 0.0, 1.0]),
                        ([0.9, -0.1, 0.1], [-0.8, 0.1, 0.3])):
        ours = render_ggx(b["albedo"], b["normal"], roughness, metallic, light, view)[0].permute(1, 2, 0).numpy()
        theirs = brdf.render_ggx(b["albedo"][0].permute(1, 2, 0).numpy(), b["normal"][0].permute(1, 2, 0).numpy(),
                                 roughness[0, 0].numpy(), metallic[0, 0].numpy(), np.array(light), np.array(view))
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)


def _reference_ssim(pred: np.ndarray, target: np.ndarray, window: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Wang et al. 2004 SSIM written out window by window (no convolution): a Gaussian window of
    `sigma`, C1 = 0.01^2, C2 = 0.03^2 (data range 1), the mean over channels and every position where
    the window fits inside the image. pred, target: (N, C, H, W) float64 -> (N,)."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    offsets = np.arange(window) - (window - 1) / 2
    weights = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma ** 2))
    weights /= weights.sum()
    n, c, h, w = pred.shape
    scores = np.zeros(n)
    for i in range(n):
        values = []
        for ch in range(c):
            for top in range(h - window + 1):
                for left in range(w - window + 1):
                    p = pred[i, ch, top:top + window, left:left + window]
                    t = target[i, ch, top:top + window, left:left + window]
                    mu_p, mu_t = (weights * p).sum(), (weights * t).sum()
                    var_p = (weights * (p - mu_p) ** 2).sum()
                    var_t = (weights * (t - mu_t) ** 2).sum()
                    cov = (weights * (p - mu_p) * (t - mu_t)).sum()
                    values.append((2 * mu_p * mu_t + c1) * (2 * cov + c2)
                                  / ((mu_p ** 2 + mu_t ** 2 + c1) * (var_p + var_t + c2)))
        scores[i] = np.mean(values)
    return scores


def test_ssim_matches_a_window_by_window_reference():
    rng = np.random.default_rng(5)
    target = rng.random((3, 2, 19, 23))
    # Three kinds of damage: noise, a darker copy, a blurred (shifted-mean) copy; plus an unrelated image.
    pred = np.stack([np.clip(target[0] + rng.normal(0, 0.1, target[0].shape), 0, 1), target[1] * 0.6 + 0.1,
                     (target[2] + np.roll(target[2], 1, axis=-1) + np.roll(target[2], 1, axis=-2)) / 3])
    ours = ssim(torch.from_numpy(pred), torch.from_numpy(target)).numpy()
    expected = _reference_ssim(pred, target)
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-9)
    assert np.all((expected > 0.05) & (expected < 0.95))  # informative values, not the trivial 1 or 0
    unrelated = rng.random((1, 1, 15, 15))
    assert ssim(torch.from_numpy(unrelated), torch.from_numpy(target[:1, :1, :15, :15])).item() == \
        pytest.approx(_reference_ssim(unrelated, target[:1, :1, :15, :15])[0], abs=1e-9)


def test_ssim_iou_and_mean_ap_on_known_cases():
    x = torch.rand(2, 1, 32, 32)
    assert torch.allclose(ssim(x, x), torch.ones(2))
    assert float(ssim(x, 1 - x).mean()) < 0.0
    a = torch.tensor([[[[1, 1], [0, 0]]]]).bool()
    b = torch.tensor([[[[1, 0], [1, 0]]]]).bool()
    assert iou(a, b).item() == pytest.approx(1 / 3)
    assert iou(torch.zeros_like(a), torch.zeros_like(b)).item() == 1.0
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert mean_average_precision(torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, -1.0]]), labels) == 1.0
    # Class 0: the positive ranked second after a negative -> AP = (1/2 + 2/3) / 2.
    ap = mean_average_precision(torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.5, -1.0]]), labels)
    assert ap == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1.0) / 2)


def test_lpips_is_unavailable_without_alexnet_weights_and_real_with_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    missing = Lpips()
    assert not missing.available and "not found" in missing.reason
    # The loading path, checked with a (random) AlexNet file: identical images are at distance 0.
    import torchvision
    weights = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet().state_dict(), weights)
    metric = Lpips(weights)
    x = torch.rand(2, 3, 64, 64)
    assert metric.available and torch.allclose(metric(x, x), torch.zeros(2))
    assert (metric(x, torch.rand(2, 3, 64, 64)) > 0).all()


@pytest.fixture(scope="module")
def models():
    return create_models(ModelsConfig.tiny(), seed=0)


def test_compute_losses_gives_gradients_only_to_active_models(models):
    models.train()
    models.zero_grad(set_to_none=True)
    losses = compute_losses(models, _batch(), {"metallic_seg", "classifier"})
    assert set(losses) == {"classifier", "metallic_seg", "total"}
    losses["total"].backward()
    touched = {name for name, m in models.items() if any(p.grad is not None for p in m.parameters())}
    assert touched == {"classifier", "metallic_seg"}


def test_old_game_samples_train_the_albedo_by_consistency_without_touching_the_other_models(models):
    models.train()
    no_albedo = torch.tensor([[0, 0, 0, 0, 1, 0, 0]] * 2, dtype=torch.float32)   # height only, as Red Eclipse
    batch = _batch(valid=no_albedo)
    models.zero_grad(set_to_none=True)
    losses = compute_losses(models, batch, {"albedo"})
    assert losses["albedo"].item() > 0
    losses["total"].backward()
    touched = {name for name, m in models.items() if any(p.grad is not None for p in m.parameters())}
    assert touched == {"albedo"}
    # With a true albedo the loss is the L1 to it alone: no chain runs after UNet-Albedo.
    every_albedo = _batch()
    with torch.no_grad():
        truth = compute_losses(models, every_albedo, {"albedo"})["albedo"]
        expected = masked_l1(models["albedo"](*(every_albedo[k] for k in ("diffuse", "normal", "specular"))),
                             every_albedo["albedo"], torch.ones(2, 1, 1, 1))
    assert truth.item() == pytest.approx(expected.item(), rel=1e-6)


def test_maps_loss_ignores_targets_of_samples_flagged_invalid(models):
    models.train()
    batch = _batch()
    batch["valid"] = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0]], dtype=torch.float32)
    torch.manual_seed(0)    # the render loss draws its light/view directions from the global RNG
    base = compute_losses(models, batch, {"maps"})["maps"]
    changed = dict(batch, maps=batch["maps"].clone())
    changed["maps"][1] = 1 - changed["maps"][1]     # the sample without valid targets
    torch.manual_seed(0)
    assert compute_losses(models, changed, {"maps"})["maps"].item() == pytest.approx(base.item(), rel=1e-6)


def test_evaluate_reports_metrics_per_model_and_a_val_loss(models):
    models.eval()
    result = evaluate(models, [_batch(seed=1), _batch(seed=2)], "cpu", max_batches=1)
    for key in ("albedo/l1", "albedo/ssim", "maps/roughness/l1", "maps/height/rmse", "maps/brdf_cosine",
                "metallic_seg/iou", "classifier/accuracy", "classifier/mean_ap", "val_loss"):
        assert np.isfinite(result[key]), key
    assert result["lpips_unavailable"] == 1.0
    assert "albedo/lpips" not in result
