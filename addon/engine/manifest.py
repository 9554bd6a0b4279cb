"""Load and validate `models/manifest.json`, the trainer's description of the exported ONNX set.

The add-on hard-codes none of the model conventions: channel orders, class names, tile sizes,
file suffixes and ONNX signatures all come from the manifest (written by `python -m trainer export`
from trainer/contract.py). What the engine does fix is which input and output *names* it feeds and
reads (`ENGINE_IO`); a manifest from another format version or with other names is refused.

Validation happens in two places:
- `load_manifest` (cheap, at start-up): the JSON structure, the format version, every model file
  exists inside the folder and matches its sha256;
- `Manifest.check_session` (when sessions.py first creates a session for a model): the ONNX graph's
  input/output names, ranks, element types and static dimensions match the manifest.
Both raise ManifestError with one sentence naming the file and what to do.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ManifestError

FORMAT_VERSION = 2  # 2: the UNets take the specular input, UNet-Maps the height prior
MANIFEST_NAME = "manifest.json"

# Names the pipeline feeds and reads, per model: (inputs, outputs).
ENGINE_IO = {
    "albedo": (("diffuse", "normal", "specular"), ("albedo",)),
    "classifier": (("image",), ("logits", "patch_logits")),
    "metallic_seg": (("image",), ("metallic_logits",)),
    "maps": (("albedo", "normal", "condition", "specular", "height_prior"), ("maps",)),
}
# The data maps the pipeline hands out in PBRResult; the manifest says in which channel each one is.
# Their one definition: in this order they are UNet-Maps' output channels (trainer.contract.MAP_CHANNELS
# is this tuple) and the trainer's `maps` targets.
ENGINE_MAPS = ("roughness", "metallic", "ao", "height")

_REINSTALL = "re-export the models with `python -m trainer export` or reinstall PBR Forge"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    sha256: str
    inputs: dict    # ONNX input name -> {"shape": [...], "dtype": ...}
    outputs: dict   # ONNX output name -> {"shape": [...], "dtype": ...}


@dataclass(frozen=True)
class Manifest:
    models_dir: Path
    pipeline_order: tuple[str, ...]
    material_classes: tuple[str, ...]
    map_channels: tuple[str, ...]
    condition_channels: tuple[str, ...]
    unet_multiple: int
    height_midlevel: float
    png_suffixes: dict
    tile: int
    overlap: int
    context_max_side: dict
    prior_max_side: int   # the height prior is integrated at most this many pixels per side
    models: dict          # name -> ModelEntry
    provenance: dict = field(default_factory=dict)

    def model(self, name: str) -> ModelEntry:
        return self.models[name]

    def check_session(self, name: str, session) -> None:
        """Compare an onnxruntime session's graph signature with the manifest entry of `name`."""
        entry = self.models[name]
        _check_io(entry, "input", entry.inputs, session.get_inputs())
        _check_io(entry, "output", entry.outputs, session.get_outputs())


def default_models_dir() -> Path:
    """The models folder that ships with PBR Forge.

    Inside a built extension it is `models/` within the package (addon/models); in a source
    checkout it is the repository's top-level `models/`.
    """
    package_dir = Path(__file__).resolve().parent.parent
    bundled = package_dir / "models"
    if (bundled / MANIFEST_NAME).is_file():
        return bundled
    return package_dir.parent / "models"


def load_manifest(models_dir: str | os.PathLike | None = None) -> Manifest:
    """Read `<models_dir>/manifest.json` and check it and every model file it lists."""
    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    manifest_path = models_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ManifestError(
            f"There is no {MANIFEST_NAME} in '{models_dir}'; choose the folder that holds the exported "
            f"models or {_REINSTALL}."
        )
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"'{manifest_path}' is not valid JSON ({exc}); {_REINSTALL}.") from exc
    except RecursionError as exc:
        raise ManifestError(f"'{manifest_path}' is nested too deeply to be a PBR Forge manifest; {_REINSTALL}.") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"'{manifest_path}' is not a PBR Forge manifest; {_REINSTALL}.")
    _check_format_version(data.get("format_version"), manifest_path)
    try:
        manifest = _parse(models_dir, data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(
            f"'{manifest_path}' is incomplete or malformed (problem with {exc}); {_REINSTALL}."
        ) from exc
    _check_engine_names(manifest, manifest_path)
    for entry in manifest.models.values():
        _check_file(entry, manifest_path)
    return manifest


def _check_format_version(version, manifest_path: Path) -> None:
    # `type is int`: True and 1.0 compare equal to 1 but are not what the exporter writes.
    if type(version) is int and version == FORMAT_VERSION:
        return
    if isinstance(version, str):
        found = f"format version {version!r} written as text"
    elif version is None:
        found = "no format version"
    else:
        found = f"format version {json.dumps(version)}"
    raise ManifestError(
        f"'{manifest_path}' has {found}, but this PBR Forge reads format version {FORMAT_VERSION} "
        f"written as a number (no quotes); update PBR Forge or {_REINSTALL}."
    )


def _parse(models_dir: Path, data: dict) -> Manifest:
    conventions = data["conventions"]
    tiling = data["tiling"]
    models = {}
    for name, spec in data["models"].items():
        models[name] = ModelEntry(
            name=name,
            path=_inside(models_dir, spec["file"]),
            sha256=str(spec["sha256"]).lower(),
            inputs=dict(spec["inputs"]),
            outputs=dict(spec["outputs"]),
        )
    return Manifest(
        models_dir=models_dir,
        pipeline_order=tuple(data["pipeline_order"]),
        material_classes=tuple(data["material_classes"]),
        map_channels=tuple(data["map_channels"]),
        condition_channels=tuple(data["condition_channels"]),
        unet_multiple=int(conventions["unet_multiple"]),
        height_midlevel=float(conventions["height_midlevel"]),
        png_suffixes=dict(conventions["png_suffixes"]),
        tile=int(tiling["tile"]),
        overlap=int(tiling["overlap"]),
        context_max_side={k: int(v) for k, v in tiling["context_max_side"].items()},
        prior_max_side=int(tiling["prior_max_side"]),
        models=models,
        provenance=dict(data.get("provenance") or {}),
    )


def _inside(models_dir: Path, file_name: str) -> Path:
    """A model path from the manifest, refusing names that leave the models folder."""
    path = (models_dir / file_name)
    if Path(file_name).is_absolute() or ".." in Path(file_name).parts:
        raise ValueError(f"model file name {file_name!r}")
    return path


def _check_engine_names(manifest: Manifest, manifest_path: Path) -> None:
    problems = []
    if set(manifest.pipeline_order) != set(ENGINE_IO) or set(manifest.models) != set(ENGINE_IO):
        problems.append(f"models {sorted(manifest.models)} instead of {sorted(ENGINE_IO)}")
    for name, (inputs, outputs) in ENGINE_IO.items():
        entry = manifest.models.get(name)
        if entry and (set(entry.inputs) != set(inputs) or set(entry.outputs) != set(outputs)):
            problems.append(f"model '{name}' has inputs {sorted(entry.inputs)} and outputs {sorted(entry.outputs)}")
    if sorted(manifest.map_channels) != sorted(ENGINE_MAPS):
        problems.append(f"map channels {list(manifest.map_channels)}")
    materials = [f"material:{name}" for name in manifest.material_classes]
    conditions = list(manifest.condition_channels)
    if len(conditions) != len(materials) + 1 or sorted(c for c in conditions if c.startswith("material:")) != sorted(materials):
        problems.append("condition channels that are not the material classes plus the metallic logit")
    if manifest.unet_multiple <= 0 or manifest.tile % manifest.unet_multiple or not 0 <= manifest.overlap < manifest.tile // 2:
        problems.append(f"tile {manifest.tile}, overlap {manifest.overlap} for multiple {manifest.unet_multiple}")
    if problems:
        raise ManifestError(
            f"'{manifest_path}' does not fit this PBR Forge ({problems[0]}); update PBR Forge or {_REINSTALL}."
        )


# sha256 of a large model takes seconds: remember it per (path, size, mtime) within the process.
_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        if key in _hash_cache:
            return _hash_cache[key]
    digest = sha256_of(path)
    with _hash_lock:
        _hash_cache[key] = digest
    return digest


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (read-only). The trainer's export and the
    batch journal use it too, so a checksum means the same everywhere."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_file(entry: ModelEntry, manifest_path: Path) -> None:
    if not entry.path.is_file():
        raise ManifestError(
            f"The model file '{entry.path.name}' listed in '{manifest_path}' is missing; {_REINSTALL}."
        )
    if file_sha256(entry.path) != entry.sha256:
        raise ManifestError(
            f"The model file '{entry.path}' does not match the sha256 in its manifest (it was changed or "
            f"is damaged); {_REINSTALL}."
        )


_ONNX_FLOAT = "tensor(float)"
_FREE_DIMS = ("height", "width")


def _check_io(entry: ModelEntry, kind: str, expected: dict, actual) -> None:
    """Names, element type, rank and static dimensions of one side of an ONNX signature.

    A manifest dimension that is a number must be that number in the graph (or left symbolic).
    "height" and "width" must be symbolic: the pipeline feeds tiles and context images of varying
    size. Other named dimensions may be fixed: a fixed batch is honoured by the pipeline (it sends
    batches of exactly that size) and patch grids follow from the fixed classifier input.
    """
    actual = {node.name: node for node in actual}

    def fail(problem: str):
        raise ManifestError(
            f"The model file '{entry.path}' does not match its manifest ({kind} {problem}); {_REINSTALL}."
        )

    if set(actual) != set(expected):
        fail(f"names {sorted(actual)} instead of {sorted(expected)}")
    for name, spec in expected.items():
        node = actual[name]
        if spec.get("dtype", "float32") == "float32" and node.type != _ONNX_FLOAT:
            fail(f"'{name}' has type {node.type}, not float32")
        shape = list(node.shape)
        if len(shape) != len(spec["shape"]):
            fail(f"'{name}' has rank {len(shape)}, not {len(spec['shape'])}")
        for axis, (want, got) in enumerate(zip(spec["shape"], shape)):
            if isinstance(want, int):
                if isinstance(got, int) and got != want:
                    fail(f"'{name}' has size {got} on axis {axis}, not {want}")
            elif isinstance(got, int) and want in _FREE_DIMS:
                fail(f"'{name}' has a fixed size {got} on axis {axis} where '{want}' must be free")


def fixed_batch(session) -> int | None:
    """The batch size an ONNX graph was exported with, when it is fixed (None when free)."""
    batch = session.get_inputs()[0].shape[0]
    return batch if isinstance(batch, int) and batch > 0 else None
