"""The material library: real PBR materials and old-game texture sets imported from the folders people
keep them in, stored one folder per material with an index, and read back as a training source.

Import (`python -m trainer data import SRC... --out LIB`) recognises
  * glTF files (`.gltf` JSON): baseColor (sRGB), metallicRoughness (G = roughness, B = metallic),
    occlusion (R) and normal textures, with their factors; the UVs of the meshes give the used-area
    mask of the atlas;
  * Godot materials (`.tres` StandardMaterial3D): albedo, normal and the ORM channels they name;
  * tagged file sets (ambientCG, Poly Haven, Node Wrangler names, texturecan, Poliigon): the rules of
    addon/engine/naming.py, with packed ORM/ARM maps unpacked and gloss turned into roughness;
  * SuperTuxKart `materials.xml` (gloss map: R glossiness, G metallic), stylised;
  * Red Eclipse `.cfg` texture slots (`texture 0|c` diffuse, `n` normal, `s` specular, `z` height):
    old-game sets without PBR truth.
Every material records its source, licence (found in the source's LICENSE/README/CREDITS files,
or given), the files it came from with their sha256, each map's colour space, the normal
convention (declared, detected by the engine's curl test, and a flag when they disagree; a decisive
test decides which one the stored OpenGL normal was decoded with), its
kind (tiling, or atlas with a mask of the used area) and its split. Near-copies (the same texture
vendored twice, at another size or compression) are found by a downscaled image hash and kept once.

Layout: LIB/index.json and LIB/materials/<source>/<name>/{albedo,normal,roughness,metallic,ao,height,
diffuse,specular,mask}.png + material.json. Maps are stored at most MAX_SIDE pixels on a side; normals
as OpenGL; data maps linear; height 16-bit.
"""
from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from addon.engine import naming
from addon.engine.errors import PBRForgeError
from addon.engine.imageio import read_image, write_atomically, write_png
from addon.engine.manifest import ENGINE_MAPS, sha256_of
from addon.engine.normalmaps import detect_normal_convention
from addon.engine.priors import normal_slopes
from trainer.data.common import DataReport, as_gray, as_rgb, decode_normal, encode_normal, periodic_resize, wrap_crop
from trainer.data.mixing import stable_int
from trainer.data.sample import (
    DOMAIN_MATSYNTH, DOMAIN_SKYRIM, DataSourceError, consistent_height, cropped_height_prior, make_sample,
)

log = logging.getLogger(__name__)

INDEX_FILE = "index.json"
MATERIAL_FILE = "material.json"
MAX_SIDE = 1024
MIN_SIDE = 16
TRUTH_MAPS = ("albedo", "normal", *ENGINE_MAPS)
OLD_GAME_MAPS = ("diffuse", "normal", "specular", "height")
COLOUR_SPACES = {"albedo": "srgb", "diffuse": "srgb", "normal": "normal_opengl"}  # everything else linear
# Licences whose terms allow training and redistribution of derived weights with attribution.
ALLOWED_LICENCES = ("CC0-1.0", "CC-BY-3.0", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-SA-3.0-AU", "CC-BY-SA-4.0",
                    "GPL-2.0-or-later", "GPL-2+", "GPL-3.0-or-later", "GPL-3+", "MIT", "Zlib", "public-domain")
LICENCE_FILES = ("LICENSE.md", "LICENSE", "LICENSE.txt", "COPYING", "CREDITS.md", "SOURCES.md", "README.md")
# Free-text licence statements (an SPDX identifier in the file wins over these; of these, the first in
# the file wins, the most specific on a tie).
_LICENCE_PATTERNS = (
    (r"\bCC[- ]?BY[- ]?NC|NonCommercial", "CC-BY-NC"),
    (r"\bCC[- ]?BY[- ]?SA[- ]?4\.0|by-sa/4\.0", "CC-BY-SA-4.0"),
    (r"\bCC[- ]?BY[- ]?SA[- ]?3\.0|by-sa/3\.0", "CC-BY-SA-3.0"),
    (r"\bCC[- ]?BY[- ]?4\.0|licenses/by/4\.0|Attribution 4\.0", "CC-BY-4.0"),
    (r"\bCC[- ]?BY[- ]?3\.0|licenses/by/3\.0|Attribution License\s+version 3\.0", "CC-BY-3.0"),
    (r"\bCC0\b|publicdomain/zero", "CC0-1.0"),
)
# A tiling texture's wrap-around seam is no stronger than its interior steps; an atlas' seam is.
SEAM_RATIO_TILING = 1.6
# Near-copies: 16x16 grey hashes (256 bits) differing in at most this many bits.
NEAR_COPY_BITS = 24
NEAR_COPY_COLOUR = 0.03  # and mean colours within this (per channel, [0, 1])
HELD_OUT_MIN = 20
HELD_OUT_FRACTION = 0.5
# What a stored map must show to count as truth of the material (training and evaluation alike):
UNAUTHORED_AO_MIN = 0.99       # an AO map with no pixel below this has no occlusion baked in
FLAT_HEIGHT_STD = 1 / 1024     # a height map flatter than this describes no relief
HEIGHT_SLOPE_AGREEMENT = 0.3   # its slopes must correlate this well with the normal map's, on both axes


# ------------------------------------------------------------------------------------------ finding

@dataclass(frozen=True)
class MapSource:
    """Where one map of a material comes from: a file, one channel of it (None: all), inverted
    (gloss -> roughness) and scaled (a glTF/Godot factor)."""

    path: Path
    channel: int | None = None
    invert: bool = False
    scale: float = 1.0


@dataclass
class Candidate:
    """A material found in a source folder, before its pixels are read."""

    name: str
    role: str                      # "truth" (PBR ground truth) or "old_game" (inputs only)
    maps: dict[str, MapSource]
    declared_normal: str           # "opengl", "directx" or "auto" (not stated)
    finder: str                    # which rule found it
    atlas: bool | None = None      # True: UV atlas, None: detect from the seams
    uv_triangles: np.ndarray | None = None  # (T, 3, 2) UVs of the meshes using it (glTF)
    alpha_is_coverage: bool = True  # the colour's alpha cuts out unused area (False: it packs a map)


def find_gltf(root: Path) -> list[Candidate]:
    """Materials of the `.gltf` files under root (plain glTF folders first, so their copies in
    glTF-Draco/-Quantized folders are the duplicates)."""
    found = []
    for path in sorted(root.rglob("*.gltf"), key=lambda p: (p.parent.name != "glTF", str(p))):
        try:
            gltf = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        images = gltf.get("images", [])
        textures = gltf.get("textures", [])

        def image_path(info):
            try:
                uri = images[textures[info["index"]]["source"]].get("uri", "")
            except (KeyError, IndexError, TypeError):
                return None
            if not uri or uri.startswith("data:"):
                return None
            file = path.parent / _unquote(uri)
            return file if file.is_file() else None

        for m, material in enumerate(gltf.get("materials", [])):
            pbr = material.get("pbrMetallicRoughness", {})
            base = image_path(pbr["baseColorTexture"]) if "baseColorTexture" in pbr else None
            if base is None:
                continue
            maps = {"albedo": MapSource(base)}
            if "metallicRoughnessTexture" in pbr and (mr := image_path(pbr["metallicRoughnessTexture"])):
                maps["roughness"] = MapSource(mr, 1, scale=float(pbr.get("roughnessFactor", 1.0)))
                maps["metallic"] = MapSource(mr, 2, scale=float(pbr.get("metallicFactor", 1.0)))
            if "normalTexture" in material and (n := image_path(material["normalTexture"])):
                maps["normal"] = MapSource(n)
            if "occlusionTexture" in material and (o := image_path(material["occlusionTexture"])):
                maps["ao"] = MapSource(o, 0)
            name = f"{path.stem}_{material.get('name') or m}"
            found.append(Candidate(name, "truth", maps, "opengl", "gltf", atlas=True,
                                   uv_triangles=_gltf_uv_triangles(gltf, path, m)))
    return found


def _unquote(uri: str) -> str:
    from urllib.parse import unquote
    return unquote(uri)


_COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def _gltf_uv_triangles(gltf: dict, path: Path, material_index: int) -> np.ndarray | None:
    """(T, 3, 2) TEXCOORD_0 triangles of the primitives drawn with the material, or None when the
    buffers are missing or compressed (the used-area mask then comes from the pixels)."""
    buffers: dict[int, bytes] = {}

    def accessor(index):
        acc = gltf["accessors"][index]
        view = gltf["bufferViews"][acc["bufferView"]]
        if view["buffer"] not in buffers:
            uri = gltf["buffers"][view["buffer"]].get("uri", "")
            buffers[view["buffer"]] = (path.parent / _unquote(uri)).read_bytes()
        dtype = np.dtype(_COMPONENTS[acc["componentType"]])
        width = _WIDTH[acc["type"]]
        stride = view.get("byteStride") or dtype.itemsize * width
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        raw = np.frombuffer(buffers[view["buffer"]], np.uint8, count=stride * (acc["count"] - 1) + dtype.itemsize * width,
                            offset=start)
        rows = np.lib.stride_tricks.as_strided(raw, (acc["count"], dtype.itemsize * width), (stride, 1))
        values = np.ascontiguousarray(rows).view(dtype).reshape(acc["count"], width).astype(np.float64)
        if acc.get("normalized") and dtype != np.float32:
            values /= np.iinfo(dtype).max
        return values

    triangles = []
    try:
        for mesh in gltf.get("meshes", []):
            for primitive in mesh.get("primitives", []):
                if primitive.get("material") != material_index or primitive.get("mode", 4) != 4 or \
                        "TEXCOORD_0" not in primitive.get("attributes", {}) or primitive.get("extensions"):
                    continue
                uv = accessor(primitive["attributes"]["TEXCOORD_0"])
                indices = (accessor(primitive["indices"]).astype(np.int64).ravel() if "indices" in primitive
                           else np.arange(len(uv)))
                triangles.append(uv[indices[: len(indices) // 3 * 3]].reshape(-1, 3, 2))
    except (OSError, KeyError, IndexError, ValueError, TypeError):
        return None
    return np.concatenate(triangles) if triangles else None


_TRES_EXT = re.compile(r'\[ext_resource[^\]]*?path="res://([^"]+)"[^\]]*?id="?([^"\s\]]+)"?')
_TRES_PROP = re.compile(r'^(\w+)\s*=\s*(.+)$', re.M)
_TRES_REF = re.compile(r'ExtResource\(\s*"?([^")\s]+)"?\s*\)')
_GODOT_CHANNELS = {"0": 0, "1": 1, "2": 2, "3": 3}  # red, green, blue, alpha (4 = grey: channel 0)


def find_godot(root: Path) -> list[Candidate]:
    """StandardMaterial3D resources (`.tres`) with an albedo texture; `res://` paths resolve from the
    project folder (the one holding project.godot, else root). Godot normals are OpenGL."""
    project = next((p.parent for p in sorted(root.rglob("project.godot"))), root)
    found = []
    for path in sorted(root.rglob("*.tres")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if "StandardMaterial3D" not in text and "SpatialMaterial" not in text:
            continue
        resources = {rid: project / rel for rel, rid in _TRES_EXT.findall(text)}
        props = dict(_TRES_PROP.findall(text))

        def texture(key):
            ref = _TRES_REF.search(props.get(key, ""))
            file = resources.get(ref.group(1)) if ref else None
            return file if file is not None and file.is_file() else None

        albedo = texture("albedo_texture")
        if albedo is None:
            continue
        maps = {"albedo": MapSource(albedo)}
        if props.get("normal_enabled", "false").strip() == "true" and (n := texture("normal_texture")):
            maps["normal"] = MapSource(n)
        for key, default_scale in (("roughness", 1.0), ("metallic", 0.0)):
            if (file := texture(f"{key}_texture")) is not None:
                channel = _GODOT_CHANNELS.get(props.get(f"{key}_texture_channel", "0").strip(), 0)
                maps[key] = MapSource(file, channel, scale=float(props.get(key, default_scale)))
        if props.get("ao_enabled", "false").strip() == "true" and (file := texture("ao_texture")):
            maps["ao"] = MapSource(file, _GODOT_CHANNELS.get(props.get("ao_texture_channel", "0").strip(), 0))
        name = props.get("resource_name", f'"{path.stem}"').strip().strip('"') or path.stem
        found.append(Candidate(name, "truth", maps, "opengl", "godot"))
    return found


# Vendor map -> library map with its channel and transform.
_TAGGED_MAPS = {
    "base_color": ("albedo", None, False), "roughness": ("roughness", 0, False), "gloss": ("roughness", 0, True),
    "metallic": ("metallic", 0, False), "ao": ("ao", 0, False), "displacement": ("height", 0, False),
}


def find_tagged(root: Path) -> list[Candidate]:
    """Tagged file sets (addon/engine/naming.py rules) with at least a base colour and a normal."""
    found = []
    folders = sorted({p.parent for p in root.rglob("*") if p.suffix.lower() in naming.IMAGE_EXTENSIONS})
    for folder in folders:
        files = [p for p in folder.iterdir() if p.is_file()]
        for key, roles in naming.tagged_sets(files).items():
            if "diffuse_specular" in roles:  # the alpha is an old-game specular mask, not truth
                roles.setdefault("base_color", roles["diffuse_specular"])
            if "base_color" not in roles or not ("normal" in roles or "normal_height" in roles):
                continue
            normal = _prefer_opengl(roles.get("normal") or roles["normal_height"])
            maps = {"normal": MapSource(normal)}
            if "normal_height" in roles:
                maps["height"] = MapSource(roles["normal_height"][0], 3)
            for role, (name, channel, invert) in _TAGGED_MAPS.items():
                if role in roles:
                    maps[name] = MapSource(_smallest_first(roles[role]), channel, invert)
            if "orm" in roles:  # ORM / Poly Haven ARM: R occlusion, G roughness, B metallic
                pack = _smallest_first(roles["orm"])
                maps.setdefault("ao", MapSource(pack, 0))
                maps.setdefault("roughness", MapSource(pack, 1))
                maps.setdefault("metallic", MapSource(pack, 2))
            found.append(Candidate(key.replace(" ", "_") or folder.name, "truth", maps,
                                   naming.normal_convention_of(normal), "tagged",
                                   alpha_is_coverage="diffuse_specular" not in roles))
    return found


def _prefer_opengl(paths: list[Path]) -> Path:
    return min(paths, key=lambda p: (naming.normal_convention_of(p) != "opengl", p.name))


def _smallest_first(paths: list[Path]) -> Path:
    """Of a map's variants (jpg/png/exr, 8/16 bit), the first one the engine reads well (no EXR)."""
    readable = [p for p in paths if p.suffix.lower() != ".exr"] or paths
    return sorted(readable, key=lambda p: p.name)[0]


_CFG_TEXTURE = re.compile(r'^\s*texture\s+"?([0cnszg])"?\s+"?([^"\s]+)"?', re.M)
_CFG_SLOTS = {"n": "normal", "s": "specular", "z": "height"}


def find_red_eclipse(root: Path) -> list[Candidate]:
    """Red Eclipse (Cube 2 engine) `.cfg` texture slots: a `texture 0|c` diffuse starts a slot, then
    `n` normal, `s` specular, `z` height. Paths are relative to the game's data folder (the folder
    above `textures/`). Normals: declared by no one, so detected."""
    found = []
    for cfg in sorted(root.rglob("*.cfg")):
        text = cfg.read_text(encoding="utf-8", errors="replace")
        data_root = next((p for p in cfg.parents if (p / "textures").is_dir()), cfg.parent)
        slot: dict[str, Path] = {}

        def flush():
            if "diffuse" in slot and "normal" in slot:
                maps = {k: MapSource(v) for k, v in slot.items()}
                found.append(Candidate(slot["diffuse"].stem, "old_game", maps, "auto", "red_eclipse", atlas=False))

        for kind, rel in _CFG_TEXTURE.findall(text):
            file = _resolve(data_root, rel)
            if kind in "0c":
                flush()
                slot = {"diffuse": file} if file else {}
            elif file and slot and kind in _CFG_SLOTS:
                slot[_CFG_SLOTS[kind]] = file
        flush()
    return found


def _resolve(data_root: Path, rel: str) -> Path | None:
    rel = re.sub(r"^<[^>]*>", "", rel)  # Cube 2 texture commands such as <dup:...> prefix the path
    file = data_root / rel
    if file.is_file():
        return file
    for ext in (".png", ".jpg", ".dds", ".tga"):
        if file.with_suffix(ext).is_file():
            return file.with_suffix(ext)
    return None


def find_supertuxkart(root: Path) -> list[Candidate]:
    """SuperTuxKart `materials.xml` entries with a `gloss-map` (R = glossiness, so roughness = 1 - R;
    G = metallic) and a `normal-map`. Textures are found beside the XML, else in the game's shared
    `textures/` folder. Hand-painted art: import it with --stylised."""
    import xml.etree.ElementTree as ET

    shared = next((p / "textures" for p in [root, *root.parents] if (p / "textures").is_dir()), None)

    def locate(folder: Path, name: str | None) -> Path | None:
        for place in (folder, shared):
            if name and place is not None and (place / name).is_file():
                return place / name
        return None

    found = []
    for xml in sorted(root.rglob("materials.xml")):
        try:
            materials = ET.parse(xml).getroot().iter("material")
        except ET.ParseError:
            continue
        for material in materials:
            albedo = locate(xml.parent, material.get("name"))
            gloss = locate(xml.parent, material.get("gloss-map"))
            normal = locate(xml.parent, material.get("normal-map"))
            if albedo is None or gloss is None or normal is None:
                continue
            maps = {"albedo": MapSource(albedo), "normal": MapSource(normal), "roughness": MapSource(gloss, 0, True),
                    "metallic": MapSource(gloss, 1)}
            found.append(Candidate(albedo.stem, "truth", maps, "auto", "supertuxkart"))
    return found


FINDERS = {"gltf": find_gltf, "godot": find_godot, "tagged": find_tagged, "red_eclipse": find_red_eclipse,
           "supertuxkart": find_supertuxkart}


# ------------------------------------------------------------------------------------------ licences

def dep5_licences(copyright_file: Path) -> list[tuple[list[str], str]]:
    """(file patterns, licence) paragraphs of a Debian machine-readable copyright file, in order."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", Path(copyright_file).read_text(encoding="utf-8", errors="replace")):
        files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", block, re.M)
        licence = re.search(r"^License:\s*(\S+)", block, re.M)
        if files and licence:
            paragraphs.append((files.group(1).split(), _DEP5_NAMES.get(licence.group(1), licence.group(1))))
    return paragraphs


_DEP5_NAMES = {"CC-BY-SA-3.0+": "CC-BY-SA-3.0", "Expat": "MIT", "CC0": "CC0-1.0", "zlib": "Zlib"}


def _dep5_match(path: Path, paragraphs) -> str | None:
    """The licence of the last paragraph whose pattern matches the path (patterns are relative to the
    source package's root, so every tail of the path is tried)."""
    from fnmatch import fnmatchcase
    tails = ["/".join(path.parts[i:]) for i in range(len(path.parts))]
    found = None
    for patterns, licence in paragraphs:
        if any(fnmatchcase(tail, pattern) for pattern in patterns for tail in tails):
            found = licence
    return found


def licence_of(path: Path, root: Path, default: str | None = None, dep5=None) -> tuple[str | None, str | None]:
    """(SPDX id, the file that states it) for a file under root: the nearest licence-bearing file in its
    folder or above (up to root), its first SPDX identifier, else its first known licence phrase."""
    if dep5:
        licence = _dep5_match(path, dep5_licences(dep5))
        if licence:
            return licence, str(dep5)
    folder = path.parent
    while True:
        for name in LICENCE_FILES:
            file = folder / name
            if file.is_file():
                text = file.read_text(encoding="utf-8", errors="replace")
                spdx = re.search(r'SPDX[- ]license[- ]identifier:?\s*"?([\w.+-]+)', text, re.I)
                if spdx:
                    return spdx.group(1), str(file)
                # The statement that comes first is the one about the files (credits list the
                # exceptions further down).
                hits = [(m.start(), rank, licence) for rank, (pattern, licence) in enumerate(_LICENCE_PATTERNS)
                        if (m := re.search(pattern, text, re.I))]
                if hits:
                    return min(hits)[2], str(file)
        if folder == root or root not in folder.parents:
            return default, None
        folder = folder.parent


# ------------------------------------------------------------------------------------------ pixels

def _read_map(source: MapSource, cache: dict) -> np.ndarray:
    if source.path not in cache:
        cache[source.path] = read_image(source.path)
    image = cache[source.path]
    if source.channel is not None:
        channel = min(source.channel, image.shape[-1] - 1) if image.ndim == 3 else None
        image = image[..., channel] if channel is not None else image
    if source.invert:
        image = 1.0 - image
    return (image * source.scale).astype(np.float32) if source.scale != 1.0 else image.astype(np.float32)


def _fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return image if image.shape[:2] == size else periodic_resize(image, *size)


def seam_ratio(image: np.ndarray) -> float:
    """The wrap-around seam's mean step over a strong interior line's (the 90th percentile of the
    per-line mean steps: joints between bricks or planks are interior lines as strong as a seam may be),
    the larger of both axes."""
    grey = image if image.ndim == 2 else image[..., :3].mean(-1)
    ratios = []
    for axis in (0, 1):
        interior = np.percentile(np.abs(np.diff(grey, axis=axis)).mean(axis=1 - axis), 90)
        seam = np.abs(np.take(grey, 0, axis=axis) - np.take(grey, -1, axis=axis)).mean()
        ratios.append(seam / max(interior, 1e-6))
    return float(max(ratios))


def uv_mask(triangles: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Used area of an atlas: the UV triangles rasterised (UVs wrap, as the sampler repeats), dilated
    by 2 px so that the gutter the artist painted counts too."""
    from PIL import Image, ImageDraw, ImageFilter

    h, w = size
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    uv = triangles - np.floor(triangles.min(axis=1, keepdims=True))  # each triangle shifted into [0, ...)
    for tri in uv:
        draw.polygon([(float(u * w), float(v * h)) for u, v in tri], fill=255)
    return np.asarray(canvas.filter(ImageFilter.MaxFilter(5)), np.float32) / 255.0


def content_mask(albedo: np.ndarray) -> np.ndarray:
    """Used area of an atlas without UVs: pixels whose 9x9 neighbourhood is not flat (padding is)."""
    from scipy.ndimage import uniform_filter
    grey = albedo[..., :3].mean(-1)
    var = uniform_filter(grey ** 2, 9) - uniform_filter(grey, 9) ** 2
    return (var > (1.0 / 255) ** 2).astype(np.float32)


def image_hash(image: np.ndarray) -> str:
    """256-bit hash of a 16x16 grey thumbnail (above/below its median): equal for resized or
    recompressed copies, different for other textures."""
    grey = periodic_resize(as_rgb(image).mean(-1), 16, 16)
    bits = (grey > np.median(grey)).ravel()
    return np.packbits(bits).tobytes().hex()


def hash_distance(a: str, b: str) -> int:
    return int(np.unpackbits(np.frombuffer(bytes.fromhex(a), np.uint8) ^ np.frombuffer(bytes.fromhex(b), np.uint8)).sum())


def is_near_copy(hash_a: str, colour_a, hash_b: str, colour_b) -> bool:
    """Same structure (hash bits) and the same mean colour: a resized or recompressed copy. The grey
    hash alone would join a black and a white chess piece, or two nearly flat textures."""
    colour_distance = float(np.abs(np.asarray(colour_a) - np.asarray(colour_b)).max())
    return hash_distance(hash_a, hash_b) <= NEAR_COPY_BITS and colour_distance <= NEAR_COPY_COLOUR


# ------------------------------------------------------------------------------------------ import

@dataclass
class ImportConfig:
    source: str                       # the library's name for this source, e.g. "gltf-samples"
    licence: str | None = None        # licence when the source's files state none
    finders: tuple[str, ...] = tuple(FINDERS)
    exclude: tuple[str, ...] = ()     # path fragments to skip (e.g. DamagedHelmet: not redistributable)
    max_side: int = MAX_SIDE
    stylised: bool = False            # hand-painted game art, not measured PBR (kept out of held-out)
    dep5: Path | None = None          # a Debian copyright file stating each file's licence


def load_index(lib: Path) -> dict:
    path = Path(lib) / INDEX_FILE
    if path.is_file():
        return json.loads(path.read_text())
    return {"version": 1, "materials": {}, "sources": {}}


def save_index(lib: Path, index: dict) -> None:
    write_atomically(Path(lib) / INDEX_FILE, json.dumps(index, indent=1, sort_keys=True).encode())


def import_sources(roots, lib: Path, cfg: ImportConfig, report: DataReport | None = None) -> dict:
    """Import every material found under `roots` into the library `lib` (added to what is there)."""
    lib = Path(lib)
    lib.mkdir(parents=True, exist_ok=True)
    report = report if report is not None else DataReport()
    index = load_index(lib)
    seen_files = {f["sha256"]: mid for mid, m in index["materials"].items() for f in m["files"].values()
                  if f["map"] in ("albedo", "diffuse")}
    added = 0
    for root in map(Path, roots):
        if not root.is_dir():
            raise DataSourceError(f"'{root}' is not a folder; give the folder the source was unpacked into.")
        candidates = [c for finder in cfg.finders for c in FINDERS[finder](root)]
        for candidate in candidates:
            where = str(next(iter(candidate.maps.values())).path)
            if any(fragment in str(s.path) for fragment in cfg.exclude for s in candidate.maps.values()):
                report.skip(where, "excluded by --exclude")
                continue
            key = "albedo" if candidate.role == "truth" else "diffuse"
            if "normal" not in candidate.maps:
                report.skip(where, "no normal map (the converter's input)")
                continue
            digest = sha256_of(candidate.maps[key].path)
            if digest in seen_files and _same_maps(index["materials"][seen_files[digest]], candidate):
                report.skip(where, "same files as a material already in the library")
                continue
            licence, licence_file = licence_of(candidate.maps[key].path, root, cfg.licence, cfg.dep5)
            if licence not in ALLOWED_LICENCES:
                report.skip(where, f"licence {licence or 'unknown'} is not one training may use")
                continue
            try:
                entry = _import_one(candidate, root, lib, cfg, licence, licence_file, index)
            except (PBRForgeError, OSError, ValueError) as exc:
                report.skip(where, f"not imported: {exc}")
                continue
            if entry is None:
                report.skip(where, "near-copy of a material already in the library")
                continue
            index["materials"][entry["id"]] = entry
            seen_files[digest] = entry["id"]
            added += 1
            report.ok(cfg.source)
    index["sources"][cfg.source] = {"roots": [str(r) for r in roots], "licence_default": cfg.licence,
                                    "stylised": cfg.stylised}
    assign_split(index)
    save_index(lib, index)
    log.info("%s: %d materials added, %d skipped", cfg.source, added, sum(report.skipped.values()))
    return index


def _same_maps(entry: dict, candidate: Candidate) -> bool:
    return sorted(entry["maps"]) == sorted(candidate.maps)


def _import_one(candidate: Candidate, root: Path, lib: Path, cfg: ImportConfig, licence: str,
                licence_file: str | None, index: dict) -> dict | None:
    cache: dict = {}
    names = TRUTH_MAPS if candidate.role == "truth" else OLD_GAME_MAPS
    colour_key = "albedo" if candidate.role == "truth" else "diffuse"
    colour = _read_map(candidate.maps[colour_key], cache)
    alpha = colour[..., 3] if colour.ndim == 3 and colour.shape[-1] == 4 and candidate.alpha_is_coverage else None
    h, w = colour.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"{w}x{h} is below {MIN_SIDE} px, too small to learn from")
    scale = min(1.0, cfg.max_side / max(h, w))
    size = (max(4, round(h * scale / 4) * 4), max(4, round(w * scale / 4) * 4))
    maps = {colour_key: _fit(as_rgb(colour), size)}
    digest = image_hash(maps[colour_key])
    mean_colour = [round(float(c), 4) for c in maps[colour_key].reshape(-1, 3).mean(0)]
    for other in index["materials"].values():
        if other["role"] == candidate.role and is_near_copy(other["hash"], other["mean_colour"], digest, mean_colour):
            other.setdefault("near_copies", []).append(str(candidate.maps[colour_key].path))
            return None
    normal_info = {}
    for name in names:
        source = candidate.maps.get(name)
        if source is None or name == colour_key:
            continue
        image = _read_map(source, cache)
        if name == "normal":
            image = as_rgb(image)
            detected = detect_normal_convention(image * 2 - 1, warnings := [])
            declared = candidate.declared_normal
            if warnings:
                detected = "unclear"
            # The pixels are the evidence: a decisive curl test wins over the declaration (hand-made
            # sets are often exported in the other convention than their engine states).
            used = detected if detected != "unclear" else (declared if declared != "auto" else "directx")
            normal_info = {"declared": declared, "detected": detected, "used": used,
                           "disagree": declared != "auto" and detected not in ("unclear", declared)}
            image = encode_normal(decode_normal(_fit(image, size), directx=used == "directx"), directx=False)
            if source.channel is None and candidate.role == "old_game" and \
                    read_image(source.path).shape[-1] == 4 and "specular" not in candidate.maps:
                maps["specular"] = _fit(read_image(source.path)[..., 3], size)
        else:
            image = np.clip(_fit(as_gray(image), size), 0, 1)
        maps[name] = image
    kind = _kind(candidate, maps[colour_key], alpha)
    mask = None
    if kind == "atlas":
        mask = uv_mask(candidate.uv_triangles, size) if candidate.uv_triangles is not None else None
        if mask is None or mask.mean() < 0.02:
            mask = content_mask(maps[colour_key])
        if alpha is not None:
            mask = mask * (_fit(alpha, size) > 0.5)
    mid = f"{cfg.source}/{_safe(candidate.name)}"
    while mid in index["materials"]:
        mid += "_"
    folder = lib / "materials" / mid
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in maps.items():
        write_png(folder / f"{name}.png", image, bits=16 if name == "height" else 8)
    if mask is not None:
        write_png(folder / "mask.png", mask)
    files = {name: {"map": name, "path": str(s.path.relative_to(root)) if root in s.path.parents else str(s.path),
                    "sha256": sha256_of(s.path), "channel": s.channel, "inverted": s.invert, "scale": s.scale}
             for name, s in candidate.maps.items()}
    entry = {
        "id": mid, "name": candidate.name, "source": cfg.source, "role": candidate.role, "finder": candidate.finder,
        "licence": licence, "licence_file": licence_file, "root": str(root), "files": files,
        "maps": sorted(maps), "colour_spaces": {n: COLOUR_SPACES.get(n, "linear") for n in maps},
        "normal_convention": normal_info, "kind": kind, "used_area": float(mask.mean()) if mask is not None else 1.0,
        "size": list(size), "hash": digest, "mean_colour": mean_colour, "stylised": cfg.stylised,
        "group": _group(cfg.source, candidate.name),
    }
    (folder / MATERIAL_FILE).write_text(json.dumps(entry, indent=1))
    return entry


def _kind(candidate: Candidate, colour: np.ndarray, alpha) -> str:
    if candidate.atlas is not None:
        return "atlas" if candidate.atlas else "tiling"
    if alpha is not None and alpha.min() < 0.5:
        return "atlas"
    return "tiling" if seam_ratio(colour) < SEAM_RATIO_TILING else "atlas"


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("_") or "material"


def _group(source: str, name: str) -> str:
    """Materials that are variants of one another (`painted_wooden_cabinet`, `..._02`) share a group."""
    words = [w for w in naming.words_of(name) if not w.isdigit()]
    return f"{source}:{'_'.join(words[:3])}"


def assign_split(index: dict) -> None:
    """Held-out split by material group: realistic tiling materials, in a fixed hash order, until at
    least HELD_OUT_MIN materials and HELD_OUT_FRACTION of them are held out. A material once held out
    stays held out (imports added later never move it back to training)."""
    materials = index["materials"]
    held = {m["group"] for m in materials.values() if m.get("split") == "heldout"}
    pool = sorted({m["group"] for m in materials.values()
                   if m["role"] == "truth" and m["kind"] == "tiling" and not m["stylised"]},
                  key=lambda g: (stable_int(g), g))
    tiling = [m for m in materials.values() if m["role"] == "truth" and m["kind"] == "tiling" and not m["stylised"]]
    target = max(HELD_OUT_MIN, int(round(HELD_OUT_FRACTION * len(tiling))))
    for group in pool:
        if sum(m["group"] in held for m in tiling) >= target:
            break
        held.add(group)
    for m in materials.values():
        m["split"] = "heldout" if m["group"] in held else "train"
    index["heldout"] = sorted(mid for mid, m in materials.items() if m["split"] == "heldout")


def summary(index: dict) -> dict:
    """Counts per source, map, licence, kind and split (what docs/data.md reports)."""
    from collections import Counter
    out = {"materials": len(index["materials"])}
    for key in ("source", "licence", "kind", "split", "role"):
        out[key] = dict(Counter(m[key] for m in index["materials"].values()))
    out["maps"] = dict(Counter(n for m in index["materials"].values() for n in m["maps"]))
    out["normal_convention_disagreements"] = sum(bool(m["normal_convention"].get("disagree"))
                                                 for m in index["materials"].values())
    out["heldout_tiling"] = sum(m["split"] == "heldout" and m["kind"] == "tiling" for m in index["materials"].values())
    return out


def training_sources(lib) -> dict:
    """Per source, what training may read of a library (its train split): materials by role, the
    licences with their counts, and the held-out count it never reads (the manifest records this)."""
    from collections import Counter, defaultdict
    out = defaultdict(lambda: {"train": Counter(), "licences": Counter(), "heldout": 0})
    for m in load_index(lib)["materials"].values():
        entry = out[m["source"]]
        if m["split"] == "train":
            entry["train"][m["role"]] += 1
            entry["licences"][m["licence"]] += 1
        else:
            entry["heldout"] += 1
    return {source: {"train": dict(e["train"]), "licences": dict(e["licences"]), "heldout": e["heldout"]}
            for source, e in sorted(out.items())}


# ------------------------------------------------------------------------------------------ reading

def height_agrees_with_normal(height: np.ndarray, normal: np.ndarray) -> bool:
    """Whether a height map describes the surface of its normal map: the correlation of its slopes
    with the normal's (OpenGL unit vectors) reaches HEIGHT_SLOPE_AGREEMENT along both axes."""
    if height.shape != normal.shape[:2]:
        return False
    slopes = normal_slopes(normal)
    steps = ((np.roll(height, -1, 1) - np.roll(height, 1, 1)), (np.roll(height, -1, 0) - np.roll(height, 1, 0)))
    for step, slope in zip(steps, slopes):
        if step.std() < 1e-9 or slope.std() < 1e-9:
            return False
        if np.corrcoef(step.ravel(), slope.ravel())[0, 1] < HEIGHT_SLOPE_AGREEMENT:
            return False
    return True


def unusable_truth(entry: dict, maps: dict[str, np.ndarray]) -> list[str]:
    """The stored maps that are not truth about the material, so training and evaluation treat them
    as missing: AO of an object atlas (occlusion baked from the mesh, which no texture input shows),
    AO with no occlusion at all (packed ORM channels left white), and height that is flat or whose
    slopes contradict the material's own normal map (a displacement of some other surface)."""
    drop = []
    if "ao" in maps and (entry["kind"] == "atlas" or float(maps["ao"].min()) >= UNAUTHORED_AO_MIN):
        drop.append("ao")
    if "height" in maps and (float(maps["height"].std()) < FLAT_HEIGHT_STD or
                             ("normal" in maps and not height_agrees_with_normal(maps["height"], maps["normal"]))):
        drop.append("height")
    return drop


def _resized_shape(stored: tuple[int, int], resolution: int, size: tuple[int, int]) -> tuple[int, int]:
    """A stored material's shape with its longer side at `resolution`, no side below the crop's."""
    scale = resolution / max(stored)
    return max(size[0], round(stored[0] * scale)), max(size[1], round(stored[1] * scale))


class LibraryDataset:
    """Materials of a library as a training source (trainer.data.sample interface).

    role "truth": ground-truth materials with old-game inputs rendered on the fly (trainer.data.degrade);
    role "old_game": real old-game inputs, their height the only target (where it agrees with their
    normal; every other `valid` flag 0). `split` "train"
    never lists a held-out material, and reading one through it raises.
    """

    def __init__(self, lib, *, split: str = "train", role: str = "truth", resolution: int = 1024,
                 report: DataReport | None = None, cache_bytes: int = 2 << 30):
        from trainer.data.degrade import DEFAULT
        self.lib = Path(lib)
        index_path = self.lib / INDEX_FILE
        if not index_path.is_file():
            raise DataSourceError(f"'{lib}' is not a material library (no {INDEX_FILE}); build it with "
                                  "`python -m trainer data import`.")
        index = json.loads(index_path.read_text())
        if split not in ("train", "heldout"):
            raise ValueError(f"unknown split {split!r}")
        self.split, self.role = split, role
        self.domain = DOMAIN_MATSYNTH if role == "truth" else DOMAIN_SKYRIM
        self.resolution = int(resolution)
        self.report = report if report is not None else DataReport()
        self.degradation = DEFAULT
        self.entries = [m for _, m in sorted(index["materials"].items())
                        if m["split"] == split and m["role"] == role]
        self._heldout = set(index.get("heldout", ()))
        self._not_truth: dict[int, list[str]] = {}
        # Decoding and resizing a material costs more than rendering and cropping it: the resized
        # materials are kept (read-only), least recently used dropped first, within cache_bytes.
        self._resized: OrderedDict[tuple, dict[str, np.ndarray]] = OrderedDict()
        self._cache_bytes, self._cached_bytes = int(cache_bytes), 0
        self._stored_shape: dict[int, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def material_key(self, index: int) -> str:
        return self.entries[index]["id"]

    def labels_of(self, index: int):
        return None

    def read_material(self, index: int) -> dict[str, np.ndarray]:
        """The stored maps of one material (normals as OpenGL unit vectors, mask when an atlas)."""
        entry = self.entries[index]
        if self.split == "train" and entry["id"] in self._heldout:
            raise DataSourceError(f"{entry['id']} is held out for evaluation; training never reads it.")
        folder = self.lib / "materials" / entry["id"]
        maps = {}
        for name in entry["maps"] + (["mask"] if entry["kind"] == "atlas" and (folder / "mask.png").is_file() else []):
            image = read_image(folder / f"{name}.png")
            maps[name] = decode_normal(as_rgb(image), directx=False) if name == "normal" else \
                (as_rgb(image) if name in ("albedo", "diffuse") else as_gray(image))
        return maps

    def not_truth(self, index: int, maps: dict[str, np.ndarray]) -> list[str]:
        """The maps of `read_material` that are no target (unusable_truth, judged on the whole material
        and remembered): they may still shape the rendered old-game input (baked AO is what old
        diffuses carry), but nothing is trained or judged on them."""
        if index not in self._not_truth:
            self._not_truth[index] = unusable_truth(self.entries[index], maps)
        return self._not_truth[index]

    def load(self, index: int, rng: np.random.Generator, size: tuple[int, int], resolution: int | None = None) -> dict:
        """One sample: the material resized whole to `resolution` (longer side), a crop of `size` (wrap-
        around for tiling materials; inside the used area for atlases), inputs rendered for truth."""
        maps = self._material_at(index, int(resolution or self.resolution), size)
        excluded = self._not_truth[index]
        top, left = self._crop_origin(maps.get("mask"), next(iter(maps.values())).shape[:2], size, rng)

        def crop(image):
            return None if image is None else wrap_crop(image, top, left, *size)

        if self.role == "old_game":
            # A real old-game pair: no PBR truth, but its own height map is a target where it describes
            # the surface of its normal (unusable_truth) — the only real heights made alongside old-game
            # inputs, unlike consistent_height's re-rendered ones.
            height = None if "height" in excluded else crop(maps.get("height"))
            return make_sample(crop(maps["diffuse"]), crop(maps["normal"]), domain=self.domain,
                               specular=crop(maps.get("specular")), maps={"height": height},
                               prior=cropped_height_prior(maps["normal"], top, left, *size))
        from trainer.data.degrade import render_old_game
        # The input is rendered from the whole texture, as a game's texture is whole, then cropped.
        diffuse, normal_pixels = render_old_game(maps, rng, self.degradation)
        normal = decode_normal(normal_pixels[..., :3], directx=True)
        specular = normal_pixels[..., 3] if normal_pixels.shape[-1] == 4 else None
        targets = {k: None if k in excluded else crop(maps.get(k)) for k in ("roughness", "metallic", "ao")}
        targets["height"] = consistent_height(maps["normal"], top, left, *size)
        return make_sample(crop(diffuse), crop(normal), domain=self.domain, specular=crop(specular),
                           albedo=crop(maps["albedo"]), maps=targets,
                           prior=cropped_height_prior(normal, top, left, *size))

    def _material_at(self, index: int, resolution: int, size: tuple[int, int]) -> dict[str, np.ndarray]:
        """The material resized whole so its longer side is `resolution` (and no side below the crop),
        unit normals; judged for truth (not_truth) on the stored maps the first time it is read."""
        stored = self._stored_shape.get(index)
        if stored is not None:
            key = (index, *_resized_shape(stored, resolution, size))
            if key in self._resized:
                self._resized.move_to_end(key)
                return self._resized[key]
        maps = self.read_material(index)
        self.not_truth(index, maps)
        stored = self._stored_shape[index] = next(iter(maps.values())).shape[:2]
        shape = _resized_shape(stored, resolution, size)
        maps = {k: periodic_resize(v, *shape) for k, v in maps.items()}
        if "normal" in maps:
            maps["normal"] = maps["normal"] / np.linalg.norm(maps["normal"], axis=-1, keepdims=True).clip(1e-6)
        for image in maps.values():
            image.flags.writeable = False  # shared by every later sample of the material
        self._resized[(index, *shape)] = maps
        self._cached_bytes += sum(image.nbytes for image in maps.values())
        while self._cached_bytes > self._cache_bytes and len(self._resized) > 1:
            _, dropped = self._resized.popitem(last=False)
            self._cached_bytes -= sum(image.nbytes for image in dropped.values())
        return maps

    @staticmethod
    def _crop_origin(mask, shape, size, rng) -> tuple[int, int]:
        if mask is None:
            return int(rng.integers(shape[0])), int(rng.integers(shape[1]))
        ys, xs = np.nonzero(mask > 0.5)
        if len(ys) == 0:
            return 0, 0
        pick = int(rng.integers(len(ys)))
        return (int(np.clip(ys[pick] - size[0] // 2, 0, max(shape[0] - size[0], 0))),
                int(np.clip(xs[pick] - size[1] // 2, 0, max(shape[1] - size[1], 0))))


# ------------------------------------------------------------------------------------------ command line

def register_cli(subparsers) -> None:
    """`python -m trainer data import SRC... --out LIB --source NAME [...]` and `data summary LIB`."""
    parser = subparsers.add_parser("data", help="build the material library from real sources")
    commands = parser.add_subparsers(dest="data_command", required=True)
    p = commands.add_parser("import", help="import the materials found in SRC folders into LIB")
    p.add_argument("sources", nargs="+", type=Path, help="folders the source was unpacked into")
    p.add_argument("--out", required=True, type=Path, help="library folder (created; imports add to it)")
    p.add_argument("--source", required=True, help="the library's name for this source, e.g. gltf-samples")
    p.add_argument("--licence", help="SPDX licence of files whose folders state none")
    p.add_argument("--finder", action="append", choices=sorted(FINDERS), help="only these rules (default all)")
    p.add_argument("--exclude", action="append", default=[], help="skip files whose path contains this")
    p.add_argument("--max-side", type=int, default=MAX_SIDE)
    p.add_argument("--stylised", action="store_true", help="hand-painted art: never in the held-out split")
    p.add_argument("--dep5", type=Path, help="Debian copyright file (DEP-5) stating each file's licence")
    p.set_defaults(func=_import_command)
    s = commands.add_parser("summary", help="counts per source, map, licence, kind and split")
    s.add_argument("lib", type=Path)
    s.set_defaults(func=lambda args: print(json.dumps(summary(load_index(args.lib)), indent=1)) or 0)


def _import_command(args) -> int:
    cfg = ImportConfig(source=args.source, licence=args.licence, finders=tuple(args.finder or FINDERS),
                       exclude=tuple(args.exclude), max_side=args.max_side, stylised=args.stylised,
                       dep5=args.dep5)
    report = DataReport()
    index = import_sources(args.sources, args.out, cfg, report)
    mine = [m for m in index["materials"].values() if m["source"] == args.source]
    print(f"{args.source}: {len(mine)} materials in {args.out} ({sum(report.loaded.values())} added now, "
          f"{sum(report.skipped.values())} skipped)")
    for reason, count in sorted(report.skipped.items(), key=lambda kv: -kv[1]):
        print(f"  skipped {count}: {reason}")
    return 0
