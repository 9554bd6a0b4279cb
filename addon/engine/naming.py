"""Texture naming: Skyrim suffixes, Node Wrangler tags, diffuse/normal pairing and output names.

Every rule about file names lives here, so the add-on, the CLI, the batch runner and the
trainer agree on which file is a diffuse, which is its normal and where outputs go.
All matching is case-insensitive (Skyrim mods mix `Foo_N.DDS` and `foo_n.dds`).
"""
from __future__ import annotations

import re
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

from .errors import PBRForgeError

# Image files the engine reads as textures.
TEXTURE_EXTENSIONS = (".dds", ".tga", ".png")
# Every image file name a vendor set may use (the engine decodes all of them with Pillow).
IMAGE_EXTENSIONS = TEXTURE_EXTENSIONS + (".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".exr")

# Skyrim texture-set suffix -> role. A file with no known suffix is a diffuse.
# Several suffixes share a role; the role names are what `role_of` returns.
SKYRIM_SUFFIXES = {
    "_d": "diffuse",
    "_n": "normal",
    "_msn": "model_space_normal",
    "_g": "glow",
    "_sk": "skin_tint",
    "_p": "parallax",
    "_e": "cubemap",
    "_m": "env_mask",
    "_em": "env_mask",
    "_envmask": "env_mask",
    "_b": "backlight",
    "_bl": "backlight",
    "_s": "skin_specular",
    "_flow": "hair_flow",    # hair flow direction maps (KS Hairdos and the like)
    "_i": "inner_layer",     # inner layer of a multilayer-parallax set
    # Outputs of Community Shaders True PBR sets (never conversion inputs).
    "_rmaos": "rmaos",
    "_cnr": "coat_normal_roughness",
    "_f": "fuzz",
}

# Community Shaders True PBR: role -> suffix of the file next to the albedo (`<name>.dds`).
TRUEPBR_SUFFIXES = {"albedo": "", "normal": "_n", "rmaos": "_rmaos", "height": "_p"}
# Files a True PBR set holds only when the original has them (the `_g` glow beside a diffuse).
TRUEPBR_OPTIONAL_SUFFIXES = {"glow": "_g"}

# The folder (under textures/) where True PBR sets conventionally live.
TRUEPBR_FOLDER = "pbr"

# Node Wrangler's file-name tags (what Blender users expect), map -> tags.
NODE_WRANGLER_TAGS = {
    "base_color": ("diffuse", "diff", "albedo", "base", "col", "color", "basecolor"),
    "roughness": ("roughness", "rough", "rgh"),
    "metallic": ("metallic", "metalness", "metal", "mtl"),
    "normal": ("normal", "nor", "nrm", "nrml", "norm"),
    "displacement": ("displacement", "displace", "disp", "dsp", "height", "heightmap"),
    "ao": ("ao", "ambient", "occlusion"),
}
# Further maps real vendors ship beside the base colour (never conversion inputs). The packs hold
# several maps: ORM/ARM = R occlusion, G roughness, B metallic (glTF, Godot, Poly Haven).
VENDOR_MAP_TAGS = {
    "gloss": ("gloss", "glossy", "glossiness"),
    "bump": ("bump", "bmp"),
    "specular": ("specular", "specularity", "spec", "spc"),
    "orm": ("orm", "arm"),
    "opacity": ("opacity", "alpha"),
    "emission": ("emission", "emissive", "emit"),
    # OGRE's terrain packs: colour + specular in alpha, normal + height in alpha.
    "diffuse_specular": ("diffspec",),
    "normal_height": ("normheight",),
}
MAP_TAGS = {**NODE_WRANGLER_TAGS, **VENDOR_MAP_TAGS}
_TAG_TO_MAP = {tag: role for role, tags in MAP_TAGS.items() for tag in tags}
# Words naming a normal map's green-channel convention (Poly Haven `nor_dx`, ambientCG `NormalGL`,
# texturecan `normal_directx`).
NORMAL_CONVENTION_TOKENS = {"dx": "directx", "directx": "directx", "gl": "opengl", "opengl": "opengl"}
# Words that qualify a map without naming one: the conventions, and Poliigon's workflow label that
# follows the resolution (`_COL_2K_METALNESS` is the colour map of the metalness workflow).
_POLIIGON_WORKFLOWS = ("metalness", "specular")
# Names are split on separators, then into CamelCase words, resolutions (`2K`) and digit runs.
_TAG_SEPARATORS = re.compile(r"[\s_.\-]+")
_WORD = re.compile(r"\d+[kK](?![a-z])|\d+|[A-Z]+(?![a-z])|[A-Z]?[a-z]+")
_RESOLUTION = re.compile(r"\d+k")

# Longest suffix first so "_envmask" wins over "_m" and "_msn" over "_m".
_SUFFIXES_LONGEST_FIRST = sorted(SKYRIM_SUFFIXES, key=len, reverse=True)


def split_suffix(stem: str) -> tuple[str, str]:
    """Split a file stem into (base, Skyrim suffix); suffix is lower-case, "" when none.

    >>> split_suffix("IronSword_N")
    ('IronSword', '_n')
    """
    lowered = stem.lower()
    for suffix in _SUFFIXES_LONGEST_FIRST:
        if lowered.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)], suffix
    return stem, ""


def role_of(path: str | PurePath) -> str:
    """The Skyrim role of a texture file: 'diffuse', 'normal', or another role name."""
    base, suffix = split_suffix(PurePath(path).stem)
    return SKYRIM_SUFFIXES.get(suffix, "diffuse")


def is_texture_file(path: str | PurePath) -> bool:
    return PurePath(path).suffix.lower() in TEXTURE_EXTENSIONS


def diffuses_under(root: str | Path) -> list[tuple[Path, str]]:
    """Every diffuse texture file under `root` (any depth, sorted) by its Skyrim suffix alone, with its
    set key: the folder under root and the base name without suffix, forward slashes
    ('architecture/wood01' for architecture/wood01_d.dds). The rule of the trainer's data folders
    (trainer.data.skyrim, trainer.data.preflight); a mod folder's batch discovery (batch.discover)
    adds the rules of a mod's layout on top: textures/ roots, textures/pbr/, vendor sets, one file per name.
    """
    root = Path(root)
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and is_texture_file(path) and role_of(path) == "diffuse":
            base, _suffix = split_suffix(path.stem)
            found.append((path, (path.parent.relative_to(root) / base).as_posix()))
    return found


def words_of(name: str | PurePath) -> list[str]:
    """The lower-case words of a file name: split on separators, CamelCase, resolutions and digits.

    >>> words_of("MetalPlates001_1K_NormalGL.jpg")
    ['metal', 'plates', '001', '1k', 'normal', 'gl']
    """
    return _split(name)[0]


def _split(name: str | PurePath) -> tuple[list[str], list[bool]]:
    """words_of(name), and for each word whether it starts a separator-delimited chunk."""
    path = PurePath(name)
    stem = path.stem if path.suffix.lower() in IMAGE_EXTENSIONS else path.name
    words, starts = [], []
    for chunk in _TAG_SEPARATORS.split(stem):
        for i, word in enumerate(_WORD.findall(chunk)):
            words.append(word.lower())
            starts.append(i == 0)
    return words, starts


def _tagged(words: list[str], starts: list[bool]) -> tuple[int, int, str] | None:
    """(first, last) word positions of the map tag of a name and its map, or None.

    The last tagged word wins ('rusty_metal_roughness' is roughness), a run of words tagging the same
    map counts as one ('wood_base_color'), a tag needs a name before it ('metal_plate.png' is a plate,
    not a metallic map) and Poliigon's workflow label after the resolution is not a tag. Only a word
    that starts a chunk between separators can be a tag: the CamelCase words after it qualify it
    ('NormalGL', 'ambientOcclusion'), so Skyrim names such as 'DwemerMetal01' or 'ArmorSteelArm' stay
    plain names. A word naming several maps ('MetalRoughness') is a "packed" map whose channel layout
    the name does not state.
    """
    end = len(words)
    if end >= 3 and words[-1] in _POLIIGON_WORKFLOWS and _RESOLUTION.fullmatch(words[-2]) and \
            any(w in _TAG_TO_MAP for w in words[1:-2]):
        end -= 2
    for last in range(end - 1, 0, -1):
        role = _TAG_TO_MAP.get(words[last]) if starts[last] else None
        if role is not None:
            chunk_end = next((i for i in range(last + 1, len(words)) if starts[i]), len(words))
            if {_TAG_TO_MAP.get(w, role) for w in words[last:chunk_end]} != {role}:
                role = "packed"  # 'MetalRoughness', 'OcclusionRoughnessMetallic': a pack, layout unstated
            first = last
            while first - 1 > 0 and _TAG_TO_MAP.get(words[first - 1]) == role:
                first -= 1
            return first, last, role
    return None


def tag_role(name: str | PurePath) -> str | None:
    """The map a file name is tagged with ('base_color', 'normal', 'gloss', 'orm', ...), or None."""
    tagged = _tagged(*_split(name))
    return tagged[2] if tagged else None


def _files_by_lower_name(folder: Path) -> dict[str, Path]:
    try:
        return {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
    except OSError:
        return {}


def tagged_sets(paths) -> dict[str, dict[str, list[Path]]]:
    """Texture files grouped into material sets: set key -> map -> files (several when a vendor ships
    variants, e.g. `nor_gl` and `nor_dx`; ordered by name). Untagged and non-image files are left out."""
    sets: dict[str, dict[str, list[Path]]] = {}
    for path in sorted(Path(p) for p in paths):
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        words, starts = _split(path)
        tagged = _tagged(words, starts)
        if tagged is None:
            continue
        first, last, role = tagged
        # A colour file also belongs to the set named by its words before the last tag
        # ('wood_base_color' pairs with 'wood_normal' and with 'wood_base_normal').
        for key in dict.fromkeys((" ".join(words[:first]), " ".join(words[:last]))):
            if key == " ".join(words[:first]) or role == "base_color":
                sets.setdefault(key, {}).setdefault(role, []).append(path)
    return sets


def _siblings_of(path: Path, from_map: str) -> dict[str, list[Path]]:
    """The maps of the set `path` belongs to as a `from_map` file (empty when it is not one)."""
    words, starts = _split(path)
    tagged = _tagged(words, starts)
    if tagged is None or tagged[2] != from_map:
        return {}
    files = [p for p in _files_by_lower_name(path.parent).values() if p.suffix.lower() in IMAGE_EXTENSIONS]
    sets = tagged_sets(files)
    keys = dict.fromkeys((" ".join(words[:tagged[0]]), " ".join(words[:tagged[1]])))
    merged: dict[str, list[Path]] = {}
    for key in keys:
        for role, found in sets.get(key, {}).items():
            merged.setdefault(role, []).extend(f for f in found if f not in merged.get(role, []))
    return merged


def is_node_wrangler_map(path: str | Path) -> bool:
    """True for a non-colour map of a vendor set on disk: wood_rough.png, wood_nor_dx.png,
    wood_gloss.png, ... beside wood_diffuse.png."""
    path = Path(path)
    role = tag_role(path)
    if role is None or role == "base_color":
        return False
    return bool(_siblings_of(path, role).get("base_color"))


def _preferring(candidates: list[Path], extension: str) -> Path:
    """The OpenGL variant first (Blender's and the models' convention), then the same extension."""
    def rank(p: Path):
        return (normal_convention_of(p) != "opengl", p.suffix.lower() != extension.lower(), p.name.lower())
    return min(candidates, key=rank)


def find_normal_for(diffuse_path: str | Path) -> Path | None:
    """The normal map beside a diffuse, or None.

    Tries the Skyrim name `<base>_n` (any case, .dds/.tga/.png) and then the vendor set the diffuse
    is the base colour of (wood_diffuse.png -> wood_normal.png, wood_nor_gl.png, Wood_NRM_2K.png).
    """
    diffuse_path = Path(diffuse_path)
    skyrim_normal = find_sibling(diffuse_path, "_n")
    if skyrim_normal is not None:
        return skyrim_normal
    normals = [p for p in _siblings_of(diffuse_path, "base_color").get("normal", []) if p != diffuse_path]
    return _preferring(normals, diffuse_path.suffix) if normals else None


def _extensions_preferring(extension: str) -> tuple[str, ...]:
    first = extension.lower()
    return (first,) + tuple(e for e in TEXTURE_EXTENSIONS if e != first)


def normal_convention_of(path: str | PurePath) -> str:
    """The green-channel convention a normal map's name implies: what a `dx`/`directx`/`gl`/`opengl`
    word says; else "directx" for Skyrim `_n` files and "opengl" for other tagged names (made for
    Blender); "auto" (judge the pixels) for anything else."""
    path = PurePath(path)
    skyrim_normal = role_of(path) == "normal"
    if not skyrim_normal and tag_role(path) != "normal":
        return "auto"
    for word in reversed(words_of(path)):
        if word in NORMAL_CONVENTION_TOKENS:
            return NORMAL_CONVENTION_TOKENS[word]
    return "directx" if skyrim_normal else "opengl"


def png_set_names(name: str, suffixes: dict[str, str]) -> dict[str, str]:
    """Blender PNG set: map -> file name, e.g. {'albedo': 'wood_albedo.png', ...}.

    `suffixes` comes from the models manifest (conventions.png_suffixes).
    """
    _check_plain_name(name)
    return {role: f"{name}{suffix}.png" for role, suffix in suffixes.items()}


def truepbr_names(relative_stem: str | PurePath, optional: tuple[str, ...] = ()) -> dict[str, str]:
    """True PBR set: role -> path relative to the mod root, using forward slashes.

    `relative_stem` is the diffuse path relative to `textures/` without extension,
    e.g. 'architecture/whiterun/wrwoodplank01' ->
    {'albedo': 'textures/pbr/architecture/whiterun/wrwoodplank01.dds', 'normal': '..._n.dds', ...}.
    `optional` adds roles of TRUEPBR_OPTIONAL_SUFFIXES (('glow',) -> '..._g.dds').
    """
    stem = _relative_posix(relative_stem)
    suffixes = {**TRUEPBR_SUFFIXES, **{role: TRUEPBR_OPTIONAL_SUFFIXES[role] for role in optional}}
    return {role: f"textures/{TRUEPBR_FOLDER}/{stem}{suffix}.dds" for role, suffix in suffixes.items()}


def texture_key(relative_stem: str | PurePath) -> str:
    """The patcher's `texture` value: the original diffuse path under textures\\, no extension,
    backslashes. The patchers match it against the NIF's diffuse slot and swap in textures\\pbr\\."""
    return "\\".join(PurePosixPath(_relative_posix(relative_stem)).parts)


def _relative_posix(relative: str | PurePath) -> str:
    """A relative path as forward-slash text, refusing anything that could escape a root."""
    text = str(relative).replace("\\", "/")
    pure = PurePosixPath(text)
    if not text or pure.is_absolute() or PureWindowsPath(str(relative)).drive or ".." in pure.parts:
        raise PBRForgeError(f"The texture name '{relative}' points outside the output folder; rename it.")
    return str(pure)


def _check_plain_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\\" in name or ":" in name:
        raise PBRForgeError(f"The output name '{name}' is not a plain file name; rename it.")


def safe_join(root: str | Path, relative: str | PurePath) -> Path:
    """root / relative, refusing `..`, absolute paths or drives that would land outside root."""
    root = Path(root)
    target = root.joinpath(*PurePosixPath(_relative_posix(relative)).parts)
    resolved_root = root.resolve()
    resolved = target.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise PBRForgeError(f"The texture name '{relative}' points outside the output folder; rename it.")
    return target


def find_sibling(diffuse_path: str | Path, suffix: str, files: dict[str, Path] | None = None) -> Path | None:
    """The file `<base><suffix>` beside a diffuse (any case, .dds/.tga/.png), or None.

    files: the folder's files by lower-case name, when the caller has listed it already (discovery
    looks up several suffixes per diffuse: one listing per folder, not per lookup).
    """
    diffuse_path = Path(diffuse_path)
    files = _files_by_lower_name(diffuse_path.parent) if files is None else files
    base, _suffix = split_suffix(diffuse_path.stem)
    for ext in _extensions_preferring(diffuse_path.suffix):
        found = files.get(f"{base}{suffix}{ext}".lower())
        if found is not None:
            return found
    return None


# Folders under textures/ whose textures the patchers cannot take: landscape needs PBRTextureSets
# JSON and texture-set records, not NIF patching. Actor textures hold the character skins.
LANDSCAPE_FOLDER = "landscape"
ACTORS_FOLDER = "actors"


def top_folder(relative_stem: str | PurePath) -> str:
    """The first folder of a path under textures/, lower-case ('' for a file at the top)."""
    parts = PurePosixPath(_relative_posix(relative_stem)).parts
    return parts[0].lower() if len(parts) > 1 else ""
