"""ONNX export of the four networks, with an onnxruntime-vs-PyTorch parity check and the manifest.

`export_models(models, out_dir, provenance)` writes out_dir/<contract file>.onnx for every model plus
out_dir/manifest.json (trainer.contract.build_manifest), and returns the manifest. Each network is
exported from an eval-mode copy with its LoRA adapters merged, by the dynamo exporter at opset 17
(the newest opset onnxruntime-DirectML documents). UNets take any batch and any H, W that are
multiples of contract.UNET_MULTIPLE, SegFormer any batch/H/W, the ViT any batch at 224 x 224.

Parity: every exported file is run by onnxruntime on seeded random inputs at two sizes (and on
`samples` when given) and compared with PyTorch; a difference above
PARITY_ATOL + PARITY_RTOL * max|reference| raises ExportParityError (the fp16 variant gets FP16_* tolerances).
"""
from __future__ import annotations

import datetime
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from addon.engine.imageio import write_atomically
from addon.engine.manifest import MANIFEST_NAME, sha256_of
from trainer.contract import (CLASSIFIER_INPUT_SIZE, CONDITION_CHANNELS, MODEL_SIGNATURES, UNET_MULTIPLE,
                              build_manifest)
from trainer.models import merged_copy
from trainer.models.segformer import SEGFORMER_MIN_SIDE

PARITY_ATOL = 1e-4
PARITY_RTOL = 1e-4
FP16_ATOL = 2e-2
FP16_RTOL = 2e-2
UNETS = ("albedo", "maps")


class ExportParityError(RuntimeError):
    """onnxruntime's output of an exported model differs from PyTorch's beyond the stated tolerance."""


class _Float16(nn.Module):
    """Runs a half-precision copy of a model behind float32 inputs and outputs (the contract's dtype)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.half()

    def forward(self, *inputs):
        outputs = self.model(*(x.half() for x in inputs))
        if isinstance(outputs, tuple):
            return tuple(o.float() for o in outputs)
        return outputs.float()


def random_inputs(name: str, batch: int, height: int, width: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Seeded inputs in each input's documented range (unit normals, logits of plausible size)."""
    g = torch.Generator().manual_seed(seed)
    if name == "classifier":
        height = width = CLASSIFIER_INPUT_SIZE

    def image():
        return torch.rand(batch, 3, height, width, generator=g)

    def normal():
        n = torch.randn(batch, 3, height, width, generator=g)
        n[:, 2] = n[:, 2].abs() + 0.5
        return n / n.norm(dim=1, keepdim=True)

    def specular():
        present = (torch.rand(batch, 1, 1, 1, generator=g) < 0.5).float().expand(batch, 1, height, width)
        return torch.cat([torch.rand(batch, 1, height, width, generator=g) * present, present], dim=1)

    if name == "albedo":
        return image(), normal(), specular()
    if name == "maps":
        return (image(), normal(), 4 * torch.randn(batch, len(CONDITION_CHANNELS), height, width, generator=g),
                specular(), torch.rand(batch, 1, height, width, generator=g))
    return (image(),)


def _dynamic_shapes(name: str, n_inputs: int):
    batch = torch.export.Dim("batch", min=1, max=1024)
    if name == "classifier":
        return ({0: batch},)
    if name in UNETS:
        # H = 32 k: every stride-2 level divides exactly, so skip connections line up symbolically.
        rows = torch.export.Dim("rows", min=1, max=512)
        cols = torch.export.Dim("cols", min=1, max=512)
        dims = {0: batch, 2: UNET_MULTIPLE * rows, 3: UNET_MULTIPLE * cols}
    else:
        dims = {0: batch, 2: torch.export.Dim("height", min=SEGFORMER_MIN_SIDE, max=8192),
                3: torch.export.Dim("width", min=SEGFORMER_MIN_SIDE, max=8192)}
    return tuple(dims for _ in range(n_inputs))


# Opset-18 attributes of Resize whose default value means "behave exactly like opset 13-17".
_RESIZE_18_DEFAULTS = {"antialias": 0, "keep_aspect_ratio_policy": b"stretch"}


def downgrade_opset(proto, target: int) -> None:
    """Relabel an opset-18 graph as `target` (< 18), in place, when that changes no op's meaning.

    The dynamo exporter writes opset 18 and its down-converter has no Resize/Split adapters. Every op
    whose schema is older than 18 means the same at `target`; Resize only gained attributes in 18, which
    are dropped when at their defaults. Any other op new in 18 is refused loudly.
    """
    import onnx
    from onnx import defs, helper
    default = [o for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    if not default or default[0].version <= target:
        return
    for node in proto.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        since = defs.get_schema(node.op_type, default[0].version).since_version
        if since <= target:
            continue
        if node.op_type != "Resize":
            raise RuntimeError(f"cannot express {node.op_type} (opset {since}) at opset {target}")
        for attribute in list(node.attribute):
            if attribute.name in _RESIZE_18_DEFAULTS:
                if helper.get_attribute_value(attribute) != _RESIZE_18_DEFAULTS[attribute.name]:
                    raise RuntimeError(f"Resize uses {attribute.name}, which opset {target} lacks")
                node.attribute.remove(attribute)
    default[0].version = target
    onnx.checker.check_model(proto, full_check=True)


def _finish_onnx(path: Path, name: str, opset: int) -> None:
    """Set the requested opset and give inputs/outputs the contract's dim names (batch, height, width)."""
    import onnx
    proto = onnx.load(str(path))
    downgrade_opset(proto, opset)
    signature = MODEL_SIGNATURES[name]
    for values, specs in ((proto.graph.input, signature["inputs"]), (proto.graph.output, signature["outputs"])):
        for value in values:
            shape = specs[value.name]["shape"]
            for dim, wanted in zip(value.type.tensor_type.shape.dim, shape):
                if isinstance(wanted, str) and dim.HasField("dim_param"):
                    dim.dim_param = wanted
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _export_one(model: nn.Module, name: str, path: Path, opset: int) -> None:
    signature = MODEL_SIGNATURES[name]
    # Generic example sizes (not 0/1, H != W) so the exporter keeps every dim symbolic.
    example = random_inputs(name, 2, 4 * UNET_MULTIPLE, 3 * UNET_MULTIPLE, seed=0)
    # The exporter's native opset is 18; lower targets are reached by downgrade_opset.
    dynamic_shapes = _dynamic_shapes(name, len(example))
    if isinstance(model, _Float16):
        dynamic_shapes = (dynamic_shapes,)   # its forward takes the inputs as one *args tuple
    with warnings.catch_warnings():
        # The exporter notes that every input shares the same batch/height/width symbols: expected.
        warnings.filterwarnings("ignore", message=".*will not be used, since it shares the same shape")
        program = torch.onnx.export(
            model, example, dynamo=True, opset_version=max(opset, 18), verbose=False,
            input_names=list(signature["inputs"]), output_names=list(signature["outputs"]),
            dynamic_shapes=dynamic_shapes, external_data=False)
    program.save(str(path), external_data=False)
    _finish_onnx(path, name, opset)


def _run_torch(model: nn.Module, inputs) -> list[np.ndarray]:
    with torch.no_grad():
        outputs = model(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    return [o.float().numpy() for o in outputs]


def check_parity(model: nn.Module, name: str, path: Path, samples=None, atol: float = PARITY_ATOL,
                 rtol: float = PARITY_RTOL) -> float:
    """Largest |onnxruntime - torch| over random inputs (two sizes) and `samples`; raises on mismatch."""
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_names = [i.name for i in session.get_inputs()]
    cases = [random_inputs(name, 1, 2 * UNET_MULTIPLE, 2 * UNET_MULTIPLE, seed=1),
             random_inputs(name, 2, 3 * UNET_MULTIPLE, 5 * UNET_MULTIPLE, seed=2)]
    cases += [tuple(s) for s in samples or ()]
    worst = 0.0
    for inputs in cases:
        expected = _run_torch(model, inputs)
        got = session.run(None, {n: x.numpy() for n, x in zip(input_names, inputs)})
        for out_name, e, g in zip(MODEL_SIGNATURES[name]["outputs"], expected, got):
            if e.shape != g.shape:
                raise ExportParityError(f"{path.name} output {out_name}: shape {g.shape}, PyTorch gives {e.shape}")
            diff = float(np.abs(e - g).max())
            limit = atol + rtol * float(np.abs(e).max())
            if not diff <= limit:
                raise ExportParityError(
                    f"{path.name} output {out_name} differs from PyTorch by {diff:.3g} "
                    f"(limit {limit:.3g}) on inputs of shape {tuple(inputs[0].shape)}")
            worst = max(worst, diff)
    return worst


def export_models(models: nn.ModuleDict, out_dir: str | Path, provenance: dict, opset: int = 17,
                  fp16: bool = False, samples: dict[str, list[tuple[torch.Tensor, ...]]] | None = None) -> dict:
    """Export all four models to out_dir (ONNX + manifest.json), check parity, return the manifest.

    samples: optional real inputs per model name (tuples in forward-argument order) added to the
    parity check. fp16: also write `<name>_fp16.onnx` (float32 I/O, half inside), listed as
    `fp16_file` in the manifest entry.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    exported = merged_copy(models).cpu().float().eval()
    files, parity = {}, {}
    for name, signature in MODEL_SIGNATURES.items():
        model = exported[name]
        path = out_dir / signature["file"]
        _export_one(model, name, path, opset)
        parity[name] = check_parity(model, name, path, (samples or {}).get(name))
        files[name] = {"sha256": sha256_of(path), "opset": opset}
        if fp16:
            half = _Float16(merged_copy(model)).eval()
            half_path = path.with_name(path.stem + "_fp16.onnx")
            _export_one(half, name, half_path, opset)
            parity[f"{name}_fp16"] = check_parity(model, name, half_path, (samples or {}).get(name),
                                                  atol=FP16_ATOL, rtol=FP16_RTOL)
            files[name].update(fp16_file=half_path.name, fp16_sha256=sha256_of(half_path))
    provenance = {**provenance, "export": {
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "opset": opset,
        "parity_max_abs_diff": parity, "parity_tolerance": {"atol": PARITY_ATOL, "rtol": PARITY_RTOL},
    }}
    manifest = build_manifest(files, provenance)
    write_atomically(out_dir / MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    return manifest


def _export_command(args) -> int:
    from trainer.checkpoint import load_models, resolve_checkpoint, write_trainable
    checkpoint = resolve_checkpoint(args.run)
    models, run_config = load_models(checkpoint.path)
    if (Path(args.run) / "run_state.json").is_file():  # a run folder: its full record
        from trainer.train import run_provenance
        provenance = run_provenance(Path(args.run))
        # which job's weights these are (a run stopped inside D ships its latest finished job's)
        provenance["checkpoint"] = checkpoint.path.resolve().relative_to(Path(args.run).resolve()).as_posix()
    else:
        provenance = {"run": Path(args.run).name, "run_config": run_config}
    manifest = export_models(models, args.out, provenance, opset=args.opset, fp16=args.fp16)
    write_trainable(checkpoint, Path(args.out))
    print(f"Exported {len(manifest['models'])} models to {args.out}")
    for name, entry in manifest["models"].items():
        size = (Path(args.out) / entry["file"]).stat().st_size / 1e6
        diff = manifest["provenance"]["export"]["parity_max_abs_diff"][name]
        print(f"  {name:13s} {entry['file']:28s} {size:7.2f} MB  parity max|diff| {diff:.2e}")
    return 0


def register_cli(subparsers) -> None:
    """Add `export --run RUNDIR --out DIR` to the trainer's argparse sub-commands."""
    parser = subparsers.add_parser("export", help="export a training run's models to ONNX + manifest.json")
    parser.add_argument("--run", required=True, help="training run folder (or checkpoint) to export")
    parser.add_argument("--out", required=True, help="output models folder")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--fp16", action="store_true", help="also write half-precision variants")
    parser.set_defaults(func=_export_command)
