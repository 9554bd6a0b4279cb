"""Texture naming rules: Skyrim suffixes, Node Wrangler tags, pairing and safe output names."""
from pathlib import Path

import pytest

from addon.engine import naming
from addon.engine.errors import PBRForgeError


@pytest.mark.parametrize("stem, expected", [
    ("IronSword", ("IronSword", "")),
    ("IronSword_N", ("IronSword", "_n")),
    ("IronSword_d", ("IronSword", "_d")),
    ("wall_MSN", ("wall", "_msn")),
    ("wall_envmask", ("wall", "_envmask")),
    ("wall_em", ("wall", "_em")),
    ("wall_m", ("wall", "_m")),
    ("skin_sk", ("skin", "_sk")),
    ("skin_bl", ("skin", "_bl")),
    ("plank_rmaos", ("plank", "_rmaos")),
    ("_n", ("_n", "")),  # a suffix alone is a name, not an empty base
])
def test_split_suffix_recognises_skyrim_suffixes_in_any_case(stem, expected):
    assert naming.split_suffix(stem) == expected


@pytest.mark.parametrize("name, role", [
    ("a/b/Iron.DDS", "diffuse"),
    ("Iron_D.dds", "diffuse"),
    ("Iron_n.dds", "normal"),
    ("Iron_msn.dds", "model_space_normal"),
    ("Iron_G.dds", "glow"),
    ("Iron_p.dds", "parallax"),
    ("Iron_e.dds", "cubemap"),
    ("Iron_m.dds", "env_mask"),
    ("Iron_b.dds", "backlight"),
    ("Iron_s.dds", "skin_specular"),
    ("Iron_cnr.dds", "coat_normal_roughness"),
    ("Iron_f.dds", "fuzz"),
])
def test_role_of_names_the_texture_slot(name, role):
    assert naming.role_of(name) == role


@pytest.mark.parametrize("path, expected", [
    ("textures/armor/iron.dds", True),
    ("Textures/Armor/Iron_D.TGA", True),
    ("textures/armor/dwemer_metal.png", True),   # a Skyrim diffuse, whatever Node Wrangler thinks
    ("textures/armor/iron_n.dds", False),
    ("textures/armor/iron_g.dds", False),
    ("TEXTURES/PBR/armor/iron.dds", False),       # True PBR output, never re-converted
    ("textures/armor/readme.txt", False),
])
def test_is_conversion_input_accepts_only_diffuse_textures_outside_pbr(path, expected):
    assert naming.is_conversion_input(path) is expected


@pytest.mark.parametrize("name, role", [
    ("wood_diffuse.png", "base_color"), ("Wood-BaseColor.png", "base_color"),
    ("wood_rgh.png", "roughness"), ("metal plate_metalness.png", "metallic"),
    ("wood_nrm.png", "normal"), ("wood_disp.png", "displacement"),
    ("wood_ambient_occlusion.png", "ao"), ("rusty_metal_roughness.png", "roughness"),
    ("plank.png", None),
])
def test_tag_role_follows_node_wrangler_tags(name, role):
    assert naming.tag_role(name) == role


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


def test_find_normal_for_matches_skyrim_n_in_any_case_and_extension(tmp_path):
    _touch(tmp_path, "IronPlate.dds", "ironplate_N.TGA", "other_n.dds")
    assert naming.find_normal_for(tmp_path / "IronPlate.dds") == tmp_path / "ironplate_N.TGA"


def test_find_normal_for_strips_the_d_suffix(tmp_path):
    _touch(tmp_path, "Rock_d.dds", "Rock_n.dds")
    assert naming.find_normal_for(tmp_path / "Rock_d.dds") == tmp_path / "Rock_n.dds"


def test_find_normal_for_prefers_the_diffuse_extension(tmp_path):
    _touch(tmp_path, "rock.png", "rock_n.dds", "rock_n.png")
    assert naming.find_normal_for(tmp_path / "rock.png") == tmp_path / "rock_n.png"


def test_find_normal_for_pairs_node_wrangler_names(tmp_path):
    _touch(tmp_path, "wood_diffuse.png", "wood_normal.png", "oak_base_color.png", "oak_nrm.png")
    assert naming.find_normal_for(tmp_path / "wood_diffuse.png") == tmp_path / "wood_normal.png"
    assert naming.find_normal_for(tmp_path / "oak_base_color.png") == tmp_path / "oak_nrm.png"


def test_find_normal_for_returns_none_without_a_normal(tmp_path):
    _touch(tmp_path, "lonely.dds", "lonely_g.dds")
    assert naming.find_normal_for(tmp_path / "lonely.dds") is None


def test_is_node_wrangler_map_needs_a_colour_sibling(tmp_path):
    _touch(tmp_path, "wood_diffuse.png", "wood_rough.png", "dwemer_metal.png")
    assert naming.is_node_wrangler_map(tmp_path / "wood_rough.png")
    assert not naming.is_node_wrangler_map(tmp_path / "dwemer_metal.png")
    assert not naming.is_node_wrangler_map(tmp_path / "wood_diffuse.png")


@pytest.mark.parametrize("name, convention", [
    ("rock_N.dds", "directx"), ("wood_normal.png", "opengl"), ("Wood-NRM.PNG", "opengl"), ("bump.png", "auto"),
])
def test_normal_convention_follows_the_naming_style(name, convention):
    assert naming.normal_convention_of(name) == convention


def test_png_set_names_uses_the_manifest_suffixes():
    names = naming.png_set_names("wood", {"albedo": "_albedo", "normal": "_normal"})
    assert names == {"albedo": "wood_albedo.png", "normal": "wood_normal.png"}
    with pytest.raises(PBRForgeError):
        naming.png_set_names("../wood", {"albedo": "_albedo"})


def test_truepbr_names_places_the_set_under_textures_pbr():
    names = naming.truepbr_names("architecture\\whiterun\\WRWoodPlank01")
    assert names == {
        "albedo": "textures/pbr/architecture/whiterun/WRWoodPlank01.dds",
        "normal": "textures/pbr/architecture/whiterun/WRWoodPlank01_n.dds",
        "rmaos": "textures/pbr/architecture/whiterun/WRWoodPlank01_rmaos.dds",
        "height": "textures/pbr/architecture/whiterun/WRWoodPlank01_p.dds",
    }
    assert naming.texture_key("architecture/whiterun/WRWoodPlank01") == "architecture\\whiterun\\WRWoodPlank01"


@pytest.mark.parametrize("bad", ["../evil", "a/../../evil", "/etc/passwd", "C:\\evil", "..\\evil", ""])
def test_safe_join_refuses_names_escaping_the_root(tmp_path, bad):
    with pytest.raises(PBRForgeError):
        naming.safe_join(tmp_path, bad)
    with pytest.raises(PBRForgeError):
        naming.truepbr_names(bad)


def test_safe_join_keeps_nested_and_non_ascii_names_inside(tmp_path):
    target = naming.safe_join(tmp_path, "textures/pbr/Ärmor plate/Ñ_n.dds")
    assert target == tmp_path / "textures" / "pbr" / "Ärmor plate" / "Ñ_n.dds"
