"""ONNX export: the exported set validates, matches PyTorch, and mismatches fail loudly."""
from __future__ import annotations

import argparse
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from tests.conftest import TINY_MODELS_SEED
from trainer.contract import MODEL_SIGNATURES
from trainer.export import ExportParityError, _export_one, check_parity, downgrade_opset, random_inputs, register_cli
from trainer.models import ModelsConfig, add_lora, create_models


@pytest.fixture(scope="module")
def torch_models():
    return create_models(ModelsConfig.tiny(), seed=TINY_MODELS_SEED).eval()


def test_exported_set_passes_the_addon_manifest_validation(tiny_models_dir):
    from addon.engine.manifest import load_manifest
    manifest = load_manifest(tiny_models_dir)
    raw = json.loads((tiny_models_dir / "manifest.json").read_text())
    assert set(raw["models"]) == set(MODEL_SIGNATURES)
    assert raw["provenance"]["export"]["parity_tolerance"]["atol"] > 0
    assert set(manifest.models) == set(MODEL_SIGNATURES)
    for name, entry in manifest.models.items():  # what the add-on will feed and read, as the contract says
        assert entry.path.name == MODEL_SIGNATURES[name]["file"] and entry.path.is_file()
        assert list(entry.inputs) == list(MODEL_SIGNATURES[name]["inputs"])
        assert list(entry.outputs) == list(MODEL_SIGNATURES[name]["outputs"])


@pytest.mark.parametrize("name", list(MODEL_SIGNATURES))
def test_exported_files_are_opset_17_with_contract_names(tiny_models_dir, name):
    proto = onnx.load(str(tiny_models_dir / MODEL_SIGNATURES[name]["file"]))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    signature = MODEL_SIGNATURES[name]
    assert [i.name for i in proto.graph.input] == list(signature["inputs"])
    assert [o.name for o in proto.graph.output] == list(signature["outputs"])
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    expected = signature["inputs"][proto.graph.input[0].name]["shape"]
    assert dims == expected


@pytest.mark.parametrize("name, size", [("albedo", (160, 96)), ("maps", (32, 224)), ("metallic_seg", (200, 72)),
                                        ("classifier", (224, 224))])
def test_onnxruntime_matches_torch_at_sizes_not_seen_during_export(tiny_models_dir, torch_models, name, size):
    session = ort.InferenceSession(str(tiny_models_dir / MODEL_SIGNATURES[name]["file"]),
                                   providers=["CPUExecutionProvider"])
    inputs = random_inputs(name, 3, *size, seed=11)
    got = session.run(None, {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)})
    with torch.no_grad():
        expected = torch_models[name](*inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e.numpy(), atol=1e-4, rtol=1e-4)


def test_parity_check_fails_loudly_when_onnx_and_torch_disagree(tiny_models_dir):
    other = create_models(ModelsConfig.tiny(), seed=TINY_MODELS_SEED + 1).eval()
    with torch.no_grad():
        for p in other["albedo"].heads.parameters():
            p.add_(0.1)
    with pytest.raises(ExportParityError, match="differs from PyTorch"):
        check_parity(other["albedo"], "albedo", tiny_models_dir / MODEL_SIGNATURES["albedo"]["file"])


def test_lora_classifier_exports_merged_and_matches_the_adapted_model(tmp_path):
    models = create_models(ModelsConfig.tiny(), seed=0)
    add_lora(models, rank=4)
    for name, p in models.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.05)
    models.eval()
    from trainer.models import merged_copy
    path = tmp_path / "vit.onnx"
    _export_one(merged_copy(models["classifier"]).eval(), "classifier", path, 17)
    assert check_parity(models["classifier"], "classifier", path) < 1e-4   # against the unmerged model


def _resize_model(opset: int, **attributes):
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear", **attributes)
    graph = helper.make_graph(
        [node], "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_opset_downgrade_keeps_default_resize_and_refuses_what_opset_17_cannot_express():
    proto = _resize_model(18, antialias=0, keep_aspect_ratio_policy="stretch")
    downgrade_opset(proto, 17)
    assert proto.opset_import[0].version == 17
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.ones((1, 1, 2, 2), np.float32)})[0].shape == (1, 1, 4, 4)
    with pytest.raises(RuntimeError, match="antialias"):
        downgrade_opset(_resize_model(18, antialias=1), 17)


def test_export_command_is_registered_with_its_options():
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers())
    args = parser.parse_args(["export", "--run", "runs/x", "--out", "models", "--fp16"])
    assert args.run == "runs/x" and args.out == "models" and args.fp16 and args.opset == 17
    assert callable(args.func)


def test_the_map_names_have_one_definition_the_engine_and_the_trainer_share():
    from addon.engine import manifest
    from trainer import contract
    from trainer.data import sample

    assert contract.MAP_CHANNELS is manifest.ENGINE_MAPS
    assert not hasattr(sample, "MAP_NAMES")  # the sample schema uses contract.MAP_CHANNELS itself


def test_fp16_export_writes_half_precision_variants_with_float32_io(tmp_path, torch_models):
    from trainer.export import export_models

    manifest = export_models(torch_models, tmp_path, provenance={"source": "test"}, fp16=True)
    for name, entry in manifest["models"].items():
        half = onnx.load(tmp_path / entry["fp16_file"])
        assert entry["fp16_file"] == entry["file"].replace(".onnx", "_fp16.onnx")
        weights = [t.data_type for t in half.graph.initializer if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
        assert weights.count(TensorProto.FLOAT16) > weights.count(TensorProto.FLOAT), name  # half inside
        io = [v.type.tensor_type.elem_type for v in (*half.graph.input, *half.graph.output)]
        assert set(io) <= {TensorProto.FLOAT, TensorProto.INT64}, name  # callers keep feeding float32
        assert f"{name}_fp16" in manifest["provenance"]["export"]["parity_max_abs_diff"]  # parity-checked too
