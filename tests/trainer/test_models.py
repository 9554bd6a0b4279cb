"""The four networks: shapes, boundary errors, trainable parts, BatchNorm modes, LoRA."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from trainer.contract import MAP_CHANNELS
from trainer.models import (ModelsConfig, PretrainedWeightsError, add_lora, apply_train_mode, create_models,
                            merged_copy, set_trainable, trainable_parameter_names)


@pytest.fixture(scope="module")
def models():
    return create_models(ModelsConfig.tiny(), seed=0)


def _specular(n, h, w, present=True):
    flag = torch.full((n, 1, h, w), float(present))
    return torch.cat([torch.rand(n, 1, h, w) * flag, flag], dim=1)


def _unit_normal(n, h, w):
    v = torch.randn(n, 3, h, w)
    v[:, 2] = v[:, 2].abs() + 1
    return v / v.norm(dim=1, keepdim=True)


def test_forward_shapes_match_the_contract(models):
    models.eval()
    with torch.no_grad():
        logits, patches = models["classifier"](torch.rand(2, 3, 224, 224))
        assert logits.shape == (2, 13) and patches.shape == (2, 13, 14, 14)
        assert models["metallic_seg"](torch.rand(1, 3, 96, 160)).shape == (1, 1, 96, 160)
        albedo = models["albedo"](torch.rand(2, 3, 64, 96), _unit_normal(2, 64, 96), _specular(2, 64, 96))
        assert albedo.shape == (2, 3, 64, 96) and 0 <= albedo.min() and albedo.max() <= 1
        prior = torch.rand(2, 1, 64, 96)
        maps = models["maps"](albedo, _unit_normal(2, 64, 96), 5 * torch.randn(2, 14, 64, 96), _specular(2, 64, 96),
                              prior)
        assert maps.shape == (2, 4, 64, 96)
        assert 0 <= maps[:, :3].min() and maps[:, :3].max() <= 1   # roughness, metallic, AO: sigmoid heads


def test_patch_logits_are_the_head_applied_to_patch_tokens(models):
    classifier = models["classifier"].eval()
    image = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        _, patches = classifier(image)
        tokens = classifier.vit.forward_features(classifier.normalise(image))
        expected = classifier.vit.head(tokens[:, 1 + 14 * 3 + 5])
    assert torch.allclose(patches[0, :, 3, 5], expected[0], atol=1e-6)


def test_untrained_albedo_model_starts_as_the_identity_on_the_diffuse(models):
    diffuse = torch.rand(1, 3, 32, 64) * 0.9 + 0.05
    with torch.no_grad():
        albedo = models["albedo"].eval()(diffuse, _unit_normal(1, 32, 64), _specular(1, 32, 64))
    assert torch.allclose(albedo, diffuse, atol=1e-5)


def test_untrained_maps_model_starts_at_white_ao_and_the_integrated_height_prior(models):
    prior = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        maps = models["maps"].eval()(torch.rand(1, 3, 64, 64), _unit_normal(1, 64, 64), torch.randn(1, 14, 64, 64),
                                     _specular(1, 64, 64, present=False), prior)
    assert torch.equal(maps[:, MAP_CHANNELS.index("height")], prior[:, 0])
    assert torch.all(maps[:, MAP_CHANNELS.index("ao")] == 1.0)


def test_film_starts_as_identity_so_the_condition_has_no_effect_at_init(models):
    maps_model = models["maps"].eval()
    albedo, normal = torch.rand(1, 3, 64, 64), _unit_normal(1, 64, 64)
    with torch.no_grad():
        specular, prior = _specular(1, 64, 64), torch.rand(1, 1, 64, 64)
        a = maps_model(albedo, normal, torch.zeros(1, 14, 64, 64), specular, prior)
        b = maps_model(albedo, normal, 10 * torch.randn(1, 14, 64, 64), specular, prior)
    assert torch.equal(a, b)


@pytest.mark.parametrize("call, message", [
    (lambda m: m["albedo"](torch.rand(1, 4, 64, 64), torch.rand(1, 3, 64, 64), torch.rand(1, 2, 64, 64)),
     "diffuse must be N x 3"),
    (lambda m: m["albedo"](torch.rand(1, 3, 64, 48), torch.rand(1, 3, 64, 48), torch.rand(1, 2, 64, 48)),
     "multiples of 32"),
    (lambda m: m["albedo"](torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64)),
     "specular must be N x 2"),
    (lambda m: m["maps"](torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64), torch.rand(1, 13, 64, 64),
                         torch.rand(1, 2, 64, 64), torch.rand(1, 1, 64, 64)), "condition must be N x 14"),
    (lambda m: m["maps"](torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64), torch.rand(1, 14, 64, 64),
                         torch.rand(1, 2, 64, 64), torch.rand(1, 1, 32, 64)), "same height and width"),
    (lambda m: m["classifier"](torch.rand(1, 3, 256, 256)), "N x 3 x 224 x 224"),
    (lambda m: m["metallic_seg"](torch.rand(1, 1, 128, 128)), "image must be N x 3"),
    (lambda m: m["metallic_seg"](torch.rand(1, 3, 32, 128)), "at least 64"),
])
def test_wrong_shapes_raise_a_value_error_naming_the_expected_shape(models, call, message):
    with pytest.raises(ValueError, match=message):
        call(models)


def test_config_round_trips_through_json_and_rebuilds_identical_architecture():
    cfg = ModelsConfig.tiny()
    restored = ModelsConfig(**json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert restored == cfg
    a, b = create_models(cfg), create_models(restored)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_cpu_default_unets_fit_the_per_pixel_compute_budget():
    from torch.utils.flop_counter import FlopCounterMode
    models = create_models(ModelsConfig.cpu_default()).eval()
    x, specular, prior = torch.rand(1, 3, 64, 64), torch.rand(1, 2, 64, 64), torch.rand(1, 1, 64, 64)
    for name, args in (("albedo", (x, x, specular)), ("maps", (x, x, torch.rand(1, 14, 64, 64), specular, prior))):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            models[name](*args)
        macs_per_pixel = counter.get_total_flops() / 2 / (64 * 64)
        assert macs_per_pixel <= 25_000, (name, macs_per_pixel)


def test_missing_pretrained_paths_are_errors_not_silent_random_init(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="does not exist"):
        create_models(dataclasses.replace(ModelsConfig.tiny(), classifier_pretrained_path=str(tmp_path / "x.pth")))
    with pytest.raises(PretrainedWeightsError, match="config.json"):
        create_models(dataclasses.replace(ModelsConfig.tiny(), segformer_pretrained_path=str(tmp_path)))


def test_classifier_warm_start_loads_the_backbone_and_keeps_a_fresh_head(tmp_path):
    from safetensors.torch import save_file
    from timm.models.vision_transformer import VisionTransformer
    cfg = ModelsConfig.tiny()
    donor = VisionTransformer(img_size=224, patch_size=16, embed_dim=cfg.vit_embed_dim, depth=cfg.vit_depth,
                              num_heads=cfg.vit_heads, mlp_ratio=cfg.vit_mlp_ratio, num_classes=1000)
    save_file(donor.state_dict(), str(tmp_path / "vit.safetensors"))
    model = create_models(dataclasses.replace(cfg, classifier_pretrained_path=str(tmp_path / "vit.safetensors")))
    vit = model["classifier"].vit
    assert torch.equal(vit.blocks[0].attn.qkv.weight, donor.blocks[0].attn.qkv.weight)
    assert vit.head.weight.shape == (13, cfg.vit_embed_dim)


def test_segformer_warm_start_from_a_saved_folder(tmp_path):
    models = create_models(ModelsConfig.tiny(), seed=0)
    models["metallic_seg"].segformer.save_pretrained(tmp_path / "seg")
    warm = create_models(dataclasses.replace(ModelsConfig.tiny(), segformer_pretrained_path=str(tmp_path / "seg")))
    a = models["metallic_seg"].segformer.segformer.stages[0].patch_embeddings.proj.weight
    b = warm["metallic_seg"].segformer.segformer.stages[0].patch_embeddings.proj.weight
    assert torch.equal(a, b)


def _grads_after_backward(models, loss_fn):
    models.zero_grad(set_to_none=True)
    loss_fn().backward()
    return {name: [n for n, p in m.named_parameters() if p.grad is not None] for name, m in models.items()}


def _maps_loss(models):
    x = torch.rand(2, 3, 64, 64)
    return models["maps"](x, x, torch.randn(2, 14, 64, 64), torch.rand(2, 2, 64, 64), torch.rand(2, 1, 64, 64)).sum()


def test_set_trainable_single_map_head_gives_gradients_to_that_head_only():
    models = create_models(ModelsConfig.tiny(), seed=0)
    set_trainable(models, {"maps": ["head:metallic"]})
    grads = _grads_after_backward(models, lambda: _maps_loss(models))
    assert grads["maps"] and all(n.startswith("heads.metallic.") for n in grads["maps"])
    assert len(grads["maps"]) == len(list(models["maps"].heads["metallic"].parameters()))
    assert not any(grads[k] for k in ("classifier", "metallic_seg", "albedo"))


@pytest.mark.parametrize("part, prefixes", [
    ("encoder", ("trunk.encoder.",)),
    ("decoder", ("trunk.decoder.", "trunk.decoder_film.")),
    ("final_upsampling", ("trunk.final_upsampling.", "trunk.final_film.")),
    ("heads", tuple(f"heads.{m}." for m in MAP_CHANNELS)),
])
def test_unet_parts_select_exactly_their_modules(part, prefixes):
    models = create_models(ModelsConfig.tiny(), seed=0)
    set_trainable(models, {"maps": [part]})
    names = trainable_parameter_names(models)["maps"]
    everything = [n for n, _ in models["maps"].named_parameters()]
    assert names == [n for n in everything if n.startswith(prefixes)]


def test_encoder_top_half_is_the_deeper_stages_only():
    models = create_models(ModelsConfig.tiny(), seed=0)
    set_trainable(models, {"maps": ["encoder_top_half"], "classifier": ["encoder_top_half"]})
    names = trainable_parameter_names(models)
    assert {n.split(".")[2] for n in names["maps"]} == {"2", "3", "4"}
    assert {n.split(".")[2] for n in names["classifier"] if n.startswith("vit.blocks.")} == {"1"}
    assert "vit.patch_embed.proj.weight" not in names["classifier"]


def test_norm_part_trains_only_norm_parameters_and_unknown_parts_are_rejected():
    models = create_models(ModelsConfig.tiny(), seed=0)
    set_trainable(models, {"albedo": ["norm"], "classifier": ["norm"]})
    names = trainable_parameter_names(models)
    modules = dict(models["albedo"].named_modules())
    assert names["albedo"] and all(isinstance(modules[n.rsplit(".", 1)[0]], torch.nn.BatchNorm2d)
                                   for n in names["albedo"])
    assert names["classifier"] and all("norm" in n for n in names["classifier"])
    with pytest.raises(ValueError, match="no part 'decoder'"):
        set_trainable(models, {"classifier": ["decoder"]})
    with pytest.raises(ValueError, match="unknown models"):
        set_trainable(models, {"vit": ["all"]})


def test_frozen_batchnorm_keeps_its_running_statistics():
    models = create_models(ModelsConfig.tiny(), seed=0)
    spec = {"maps": ["heads"]}
    set_trainable(models, spec)
    apply_train_mode(models, spec)
    encoder_bn = models["maps"].trunk.encoder[0][0][1]
    head_bn = models["maps"].heads["ao"][0][1]
    before_encoder, before_head = encoder_bn.running_mean.clone(), head_bn.running_mean.clone()
    _maps_loss(models)
    assert torch.equal(encoder_bn.running_mean, before_encoder)
    assert not torch.equal(head_bn.running_mean, before_head)
    assert not models["albedo"].training

    spec = {"maps": ["norm"]}   # C': norm parameters and statistics train
    set_trainable(models, spec)
    apply_train_mode(models, spec)
    _maps_loss(models)
    assert not torch.equal(encoder_bn.running_mean, before_encoder)


def test_lora_heads_phase_trains_adapters_and_heads_only():
    models = create_models(ModelsConfig.tiny(), seed=0)
    add_lora(models, rank=4)
    set_trainable(models, {"classifier": ["heads", "lora"], "metallic_seg": ["lora"]})
    grads = _grads_after_backward(models, lambda: models["classifier"](torch.rand(1, 3, 224, 224))[0].sum()
                                  + models["metallic_seg"](torch.rand(1, 3, 64, 64)).sum())
    assert grads["classifier"] and all("lora_" in n or ".head.modules_to_save." in n for n in grads["classifier"])
    assert any(".head.modules_to_save." in n for n in grads["classifier"])
    assert grads["metallic_seg"] and all("lora_" in n for n in grads["metallic_seg"])
    assert all(("q_proj" in n or "v_proj" in n) for n in grads["metallic_seg"])


def test_add_lora_is_idempotent_and_round_trips_through_a_state_dict():
    models = create_models(ModelsConfig.tiny(), seed=0)
    add_lora(models, rank=4)
    keys = list(models.state_dict())
    add_lora(models, rank=4)
    assert list(models.state_dict()) == keys
    with pytest.raises(ValueError, match="rank"):
        add_lora(models, rank=8)
    for p in models.parameters():   # non-trivial adapters
        p.data.add_(0.01 * torch.randn_like(p))
    fresh = add_lora(create_models(ModelsConfig.tiny(), seed=1), rank=4)
    fresh.load_state_dict(models.state_dict())
    image = torch.rand(1, 3, 224, 224)
    models.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.equal(models["classifier"](image)[0], fresh["classifier"](image)[0])


def test_merged_copy_matches_the_unmerged_model_and_leaves_it_untouched():
    models = create_models(ModelsConfig.tiny(), seed=0)
    add_lora(models, rank=4)
    for name, p in models.named_parameters():
        if "lora_B" in name or "modules_to_save" in name:
            p.data.normal_(0, 0.05)
    merged = merged_copy(models).eval()
    models.eval()
    image, seg_image = torch.rand(2, 3, 224, 224), torch.rand(1, 3, 96, 64)
    with torch.no_grad():
        for a, b in zip(models["classifier"](image), merged["classifier"](image)):
            assert torch.allclose(a, b, atol=1e-5)
        assert torch.allclose(models["metallic_seg"](seg_image), merged["metallic_seg"](seg_image), atol=1e-5)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    assert any("lora_" in n for n, _ in models.named_parameters())
