"""The trainer ↔ add-on contract: every convention the exported models rely on.

This module is the single source of truth. `python -m trainer export` writes it into
`models/manifest.json`; the add-on (`addon/engine/manifest.py`) reads that file and
validates every model against it. Nothing in the add-on hard-codes these values.

Tensor layout everywhere: float32, NCHW. Colour images are sRGB-encoded in [0, 1]
(as the game stores them); data maps are linear in [0, 1]; normals are unit vectors in
[-1, 1] in the OpenGL convention (+Y up, as Blender and MatSynth use).
"""
from __future__ import annotations

from addon.engine.priors import HEIGHT_PRIOR_SPREAD, PRIOR_MAX_SIDE, SPECULAR_CHANNELS

from addon.engine.manifest import ENGINE_MAPS, FORMAT_VERSION  # the add-on reads exactly this version

MATERIAL_CLASSES = (
    "ceramic", "concrete", "fabric", "ground", "leather", "marble", "metal",
    "misc", "plaster", "plastic", "stone", "terracotta", "wood",
)
# Order of the channels of UNet-Maps' output and of the per-map heads (defined by the engine).
MAP_CHANNELS = ENGINE_MAPS
MAP_INDEX = {name: index for index, name in enumerate(MAP_CHANNELS)}


def map_plane(maps, name: str):
    """The one-channel slice (N,1,H,W) of an N,len(MAP_CHANNELS),H,W maps tensor that holds map `name`."""
    index = MAP_INDEX[name]
    return maps[:, index:index + 1]

# Conditioning channels fed to UNet-Maps: per-pixel material logits, then metallic logit.
CONDITION_CHANNELS = tuple(f"material:{c}" for c in MATERIAL_CLASSES) + ("metallic_mask",)

NORMAL_CONVENTION = "opengl"  # inside the models; DirectX inputs get their green flipped
HEIGHT_MIDLEVEL = 0.5         # the height of a flat surface (Blender's Displacement Midlevel)
CLASSIFIER_INPUT_SIZE = 224   # the ViT runs at a fixed size (ONNX export is static)
# UNet spatial dims must be multiples of this (four stride-2 levels plus the stem).
UNET_MULTIPLE = 32
# The largest tile; the engine shrinks tiles to split a texture evenly (2K: 4x4 tiles of 576).
DEFAULT_TILE = 640
DEFAULT_OVERLAP = 64
# Context models (classifier, metallic mask) see the whole texture downsampled so that its
# longer side is at most this; their outputs are upsampled (with wrap-around) per tile.
CONTEXT_MAX_SIDE = {"classifier": CLASSIFIER_INPUT_SIZE, "metallic_seg": 512}

# Output file suffixes of the Blender PNG set (the True PBR DDS set has its own, see addon/engine/naming.py).
PNG_SUFFIXES = {
    "albedo": "_albedo", "roughness": "_roughness", "metallic": "_metallic",
    "ao": "_ao", "height": "_height", "normal": "_normal",
}


def _image(channels, *, colour_space, value_range, meaning, fixed_size=None):
    h, w = (fixed_size, fixed_size) if fixed_size else ("height", "width")
    return {
        "shape": ["batch", channels, h, w],
        "dtype": "float32",
        "colour_space": colour_space,
        "range": list(value_range),
        "meaning": meaning,
    }


def _specular():
    return {**_image(len(SPECULAR_CHANNELS), colour_space="linear", value_range=(0, 1),
                     meaning="the old normal map's alpha (specular mask) and a presence flag; (0, 0) when absent"),
            "channels": list(SPECULAR_CHANNELS)}


# Model name -> ONNX signature and semantics. Input/output names are the ONNX names.
MODEL_SIGNATURES = {
    "albedo": {
        "file": "unet_albedo.onnx",
        "inputs": {
            "diffuse": _image(3, colour_space="srgb", value_range=(0, 1), meaning="RGB of the old diffuse"),
            "normal": _image(3, colour_space="normal_opengl", value_range=(-1, 1), meaning="tangent-space normal XYZ"),
            "specular": _specular(),
        },
        "outputs": {
            "albedo": _image(3, colour_space="srgb", value_range=(0, 1), meaning="RGB base colour"),
        },
    },
    "classifier": {
        "file": "vit_classifier.onnx",
        "inputs": {
            "image": _image(3, colour_space="srgb", value_range=(0, 1), meaning="albedo RGB",
                            fixed_size=CLASSIFIER_INPUT_SIZE),
        },
        "outputs": {
            "logits": {"shape": ["batch", len(MATERIAL_CLASSES)], "dtype": "float32",
                       "meaning": "multi-label material logits (sigmoid -> probability)"},
            "patch_logits": {"shape": ["batch", len(MATERIAL_CLASSES), "patch_rows", "patch_cols"],
                             "dtype": "float32", "meaning": "per-patch material logits"},
        },
    },
    "metallic_seg": {
        "file": "segformer_metallic.onnx",
        "inputs": {
            "image": _image(3, colour_space="srgb", value_range=(0, 1), meaning="albedo RGB"),
        },
        "outputs": {
            "metallic_logits": {"shape": ["batch", 1, "height", "width"], "dtype": "float32",
                                "meaning": "metallic-mask logit at input resolution"},
        },
    },
    "maps": {
        "file": "unet_maps.onnx",
        "inputs": {
            "albedo": _image(3, colour_space="srgb", value_range=(0, 1), meaning="RGB base colour"),
            "normal": _image(3, colour_space="normal_opengl", value_range=(-1, 1), meaning="tangent-space normal XYZ"),
            "condition": {"shape": ["batch", len(CONDITION_CHANNELS), "height", "width"], "dtype": "float32",
                          "channels": list(CONDITION_CHANNELS),
                          "meaning": "per-pixel material logits and metallic logit (FiLM input)"},
            "specular": _specular(),
            "height_prior": _image(1, colour_space="linear", value_range=(0, 1),
                                   meaning=f"integrated height of the normal map, 0.5 + {HEIGHT_PRIOR_SPREAD} x "
                                           "standard deviations (addon/engine/priors.py)"),
        },
        "outputs": {
            "maps": {"shape": ["batch", len(MAP_CHANNELS), "height", "width"], "dtype": "float32",
                     "channels": list(MAP_CHANNELS), "colour_space": "linear", "range": [0, 1],
                     "meaning": f"roughness, metallic, ambient occlusion, height ({HEIGHT_MIDLEVEL} = mid level); AO and height are "
                                "corrections to white and to the height prior, clipped to [0, 1]"},
        },
    },
}

PIPELINE_ORDER = ("albedo", "classifier", "metallic_seg", "maps")  # also the trainer's model names

# Training samples (docs/architecture.md): `domain` is an index into DOMAINS, and `valid[:, i]` flags
# whether the batch item has the target VALID_TARGETS[i].
DOMAINS = ("matsynth", "skyrim")
VALID_TARGETS = ("albedo", *MAP_CHANNELS, "metallic_mask", "labels")
VALID_INDEX = {name: index for index, name in enumerate(VALID_TARGETS)}


def build_manifest(files: dict[str, dict], provenance: dict) -> dict:
    """The manifest for an exported set.

    files: model name -> {"sha256": hex digest, "opset": int, "file": optional override}.
    provenance: how the set was made (data, phases, steps, metrics); stored verbatim.
    """
    missing = set(MODEL_SIGNATURES) - set(files)
    if missing:
        raise ValueError(f"export is missing models: {sorted(missing)}")
    models = {}
    for name, signature in MODEL_SIGNATURES.items():
        models[name] = {**signature, **files[name]}
    return {
        "format_version": FORMAT_VERSION,
        "pipeline_order": list(PIPELINE_ORDER),
        "conventions": {
            "layout": "NCHW float32",
            "normal_convention": NORMAL_CONVENTION,
            "normal_encoding": "unit XYZ in [-1, 1]; PNG files store (n + 1) / 2",
            "colour_images": "sRGB-encoded values in [0, 1]",
            "data_maps": "linear values in [0, 1]",
            "height_midlevel": HEIGHT_MIDLEVEL,
            "unet_multiple": UNET_MULTIPLE,
            "png_suffixes": PNG_SUFFIXES,
        },
        "material_classes": list(MATERIAL_CLASSES),
        "map_channels": list(MAP_CHANNELS),
        "condition_channels": list(CONDITION_CHANNELS),
        "tiling": {"tile": DEFAULT_TILE, "overlap": DEFAULT_OVERLAP, "wrap": True,
                   "context_max_side": CONTEXT_MAX_SIDE, "prior_max_side": PRIOR_MAX_SIDE},
        "models": models,
        "provenance": provenance,
    }
