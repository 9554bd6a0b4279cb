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
    "displacement": ("displacement", "disp", "height"),
    "ao": ("ao", "ambient", "occlusion"),
}
_TAG_TO_MAP = {tag: role for role, tags in NODE_WRANGLER_TAGS.items() for tag in tags}
# Node Wrangler splits names on these separators before matching tags.
_TAG_SEPARATORS = re.compile(r"[\s_.\-]+")

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


def _is_under_pbr_folder(path: PurePath) -> bool:
    """True for files under a `textures/pbr/` folder (already True PBR outputs)."""
    parts = [p.lower() for p in path.parts]
    return any(a == "textures" and b == TRUEPBR_FOLDER for a, b in zip(parts, parts[1:]))


def is_conversion_input(path: str | PurePath) -> bool:
    """True for a diffuse texture that should be converted (not an output under textures/pbr/).

    Decided by the Skyrim suffix alone: Skyrim names such as 'dwemer_metal.dds' are diffuses
    even though 'metal' is a Node Wrangler tag. Batch discovery also drops the non-colour maps
    of Node Wrangler sets found on disk (see `is_node_wrangler_map`).
    """
    path = PurePath(path)
    if not is_texture_file(path) or _is_under_pbr_folder(path):
        return False
    return role_of(path) == "diffuse"


def tag_role(name: str) -> str | None:
    """The Node Wrangler map a file name is tagged with ('base_color', 'normal', ...), or None.

    The last matching word wins, so 'rusty_metal_roughness' is roughness, not metallic.
    """
    words = [w for w in _TAG_SEPARATORS.split(PurePath(name).stem.lower()) if w]
    for word in reversed(words):
        if word in _TAG_TO_MAP:
            return _TAG_TO_MAP[word]
    return None


def _files_by_lower_name(folder: Path) -> dict[str, Path]:
    try:
        return {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
    except OSError:
        return {}


def _sibling_with_tag(path: Path, from_map: str, to_map: str, files: dict[str, Path]) -> Path | None:
    """The file beside `path` whose last `from_map` tag is replaced by a `to_map` tag, if any.

    A run of tags counts as one ('wood_base_color' -> 'wood_normal'), as does the last word alone
    ('wood_base_color' -> 'wood_base_normal').
    """
    words = re.split(r"([\s_.\-]+)", path.stem)  # even indices: words, odd: the separators
    tagged = [i for i in range(0, len(words), 2) if _TAG_TO_MAP.get(words[i].lower()) == from_map]
    if not tagged:
        return None
    last = first = tagged[-1]
    while first - 2 in tagged:
        first -= 2
    candidates = []
    for start in dict.fromkeys((first, last)):
        for tag in NODE_WRANGLER_TAGS[to_map]:
            candidates.append("".join(words[:start] + [tag] + words[last + 1:]))
    for stem in candidates:
        for ext in _extensions_preferring(path.suffix):
            found = files.get(f"{stem}{ext}".lower())
            if found is not None:
                return found
    return None


def _extensions_preferring(extension: str) -> tuple[str, ...]:
    first = extension.lower()
    return (first,) + tuple(e for e in TEXTURE_EXTENSIONS if e != first)


def is_node_wrangler_map(path: str | Path) -> bool:
    """True for a non-colour map of a Node Wrangler set on disk (wood_rough.png beside wood_diffuse.png)."""
    path = Path(path)
    tag = tag_role(path.stem)
    if tag is None or tag == "base_color":
        return False
    return _sibling_with_tag(path, tag, "base_color", _files_by_lower_name(path.parent)) is not None


def find_normal_for(diffuse_path: str | Path) -> Path | None:
    """The normal map beside a diffuse, or None.

    Tries the Skyrim name `<base>_n` (any case, .dds/.tga/.png) and then the Node Wrangler
    name with the base-colour tag replaced by a normal tag (wood_diffuse.png -> wood_normal.png).
    """
    diffuse_path = Path(diffuse_path)
    return (find_sibling(diffuse_path, "_n")
            or _sibling_with_tag(diffuse_path, "base_color", "normal", _files_by_lower_name(diffuse_path.parent)))


def normal_convention_of(path: str | PurePath) -> str:
    """The green-channel convention a normal map's name implies: "directx" for Skyrim `_n` files,
    "opengl" for Node Wrangler names (made for Blender), "auto" (judge the pixels) otherwise."""
    path = PurePath(path)
    if role_of(path) == "normal":
        return "directx"
    if tag_role(path.stem) == "normal":
        return "opengl"
    return "auto"


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


def find_sibling(diffuse_path: str | Path, suffix: str) -> Path | None:
    """The file `<base><suffix>` beside a diffuse (any case, .dds/.tga/.png), or None."""
    diffuse_path = Path(diffuse_path)
    files = _files_by_lower_name(diffuse_path.parent)
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
