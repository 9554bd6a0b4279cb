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


@pytest.mark.parametrize("name, role", [
    ("wood_diffuse.png", "base_color"), ("Wood-BaseColor.png", "base_color"),
    ("wood_rgh.png", "roughness"), ("metal plate_metalness.png", "metallic"),
    ("wood_nrm.png", "normal"), ("wood_disp.png", "displacement"),
    ("wood_ambient_occlusion.png", "ao"), ("rusty_metal_roughness.png", "roughness"),
    ("plank.png", None),
    # Skyrim names: a tag inside a CamelCase word is part of the name, not a map.
    ("DwemerMetal01.dds", None), ("ArmorSteelArm.dds", None), ("IronBaseColor.dds", None),
    ("Metal_006_ambientOcclusion.jpg", "ao"), ("MetalPlates001_1K_NormalGL.jpg", "normal"),
    ("WoodFloor043_1K_MetalRoughness.jpg", "packed"), ("Avocado_roughnessMetallic.png", "packed"),
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


# Real vendor sets, as listed by Node Wrangler's own tests (blender-addons node_wrangler/utils/paths_test.py).
VENDOR_SETS = {
    "poliigon": (["d/MetalSpottyDiscoloration001_COL_2K_METALNESS.jpg", "d/MetalSpottyDiscoloration001_Cube.jpg",
                  "d/MetalSpottyDiscoloration001_DISP16_2K_METALNESS.tif",
                  "d/MetalSpottyDiscoloration001_DISP_2K_METALNESS.jpg", "d/MetalSpottyDiscoloration001_Flat.jpg",
                  "d/MetalSpottyDiscoloration001_METALNESS_2K_METALNESS.jpg",
                  "d/MetalSpottyDiscoloration001_NRM16_2K_METALNESS.tif",
                  "d/MetalSpottyDiscoloration001_NRM_2K_METALNESS.jpg",
                  "d/MetalSpottyDiscoloration001_ROUGHNESS_2K_METALNESS.jpg",
                  "d/MetalSpottyDiscoloration001_Sphere.jpg"],
                 {"base_color": ["COL_2K"], "displacement": ["DISP16", "DISP_2K"], "metallic": ["METALNESS_2K"],
                  "normal": ["NRM16", "NRM_2K"], "roughness": ["ROUGHNESS"]}),
    "ambientcg": (["MetalPlates001_1K-JPG.usda", "MetalPlates001_1K-JPG.usdc", "MetalPlates001_1K_Color.jpg",
                   "MetalPlates001_1K_Displacement.jpg", "MetalPlates001_1K_Metalness.jpg",
                   "MetalPlates001_1K_NormalDX.jpg", "MetalPlates001_1K_NormalGL.jpg",
                   "MetalPlates001_1K_Roughness.jpg", "MetalPlates001_PREVIEW.jpg"],
                  {"base_color": ["Color"], "displacement": ["Displacement"], "metallic": ["Metalness"],
                   "normal": ["NormalDX", "NormalGL"], "roughness": ["Roughness"]}),
    "3dtextures": (["Material_2079.jpg", "Metal_006_ambientOcclusion.jpg", "Metal_006_basecolor.jpg",
                    "Metal_006_height.png", "Metal_006_metallic.jpg", "Metal_006_normal.jpg",
                    "Metal_006_roughness.jpg"],
                   {"ao": ["ambientOcclusion"], "base_color": ["basecolor"], "displacement": ["height"],
                    "metallic": ["metallic"], "normal": ["normal"], "roughness": ["roughness"]}),
    "polyhaven": (["rusty_metal_02_ao_1k.jpg", "rusty_metal_02_arm_1k.jpg", "rusty_metal_02_diff_1k.jpg",
                   "rusty_metal_02_disp_1k.png", "rusty_metal_02_nor_dx_1k.exr", "rusty_metal_02_nor_gl_1k.exr",
                   "rusty_metal_02_rough_1k.exr", "rusty_metal_02_spec_1k.png"],
                  {"ao": ["_ao_"], "orm": ["_arm_"], "base_color": ["_diff_"], "displacement": ["_disp_"],
                   "normal": ["nor_dx", "nor_gl"], "roughness": ["_rough_"], "specular": ["_spec_"]}),
    "texturecan": (["metal_0010_ao_1k.jpg", "metal_0010_color_1k.jpg", "metal_0010_height_1k.png",
                    "metal_0010_metallic_1k.jpg", "metal_0010_normal_directx_1k.png",
                    "metal_0010_normal_opengl_1k.png", "metal_0010_roughness_1k.jpg"],
                   {"ao": ["_ao_"], "base_color": ["_color_"], "displacement": ["_height_"],
                    "metallic": ["_metallic_"], "normal": ["directx", "opengl"], "roughness": ["_roughness_"]}),
}


@pytest.mark.parametrize("vendor", sorted(VENDOR_SETS))
def test_tagged_sets_groups_real_vendor_sets_into_one_material(vendor):
    names, expected = VENDOR_SETS[vendor]
    sets = naming.tagged_sets(names)
    assert len(sets) == 1, sets  # previews, USD files and unrelated images join no set
    (maps,) = sets.values()
    assert sorted(maps) == sorted(expected)
    for role, fragments in expected.items():
        assert len(maps[role]) == len(fragments)
        for fragment in fragments:
            assert any(fragment in str(p) for p in maps[role]), (role, fragment, maps[role])


@pytest.mark.parametrize("name", ["banana-color.webp", "README-banana.txt", "", ".jpg", " .png", "..."])
def test_tagged_sets_of_single_and_weird_files(name):
    sets = naming.tagged_sets([name])
    assert sets == ({"banana": {"base_color": [Path(name)]}} if name == "banana-color.webp" else {})


@pytest.mark.parametrize("name, words", [
    ("MetalPlates001_1K_NormalGL.jpg", ["metal", "plates", "001", "1k", "normal", "gl"]),
    ("rusty_metal_02_nor_dx_1k.exr", ["rusty", "metal", "02", "nor", "dx", "1k"]),
    ("Metal_006_ambientOcclusion", ["metal", "006", "ambient", "occlusion"]),
    ("MetalSpottyDiscoloration001_NRM16_2K_METALNESS.tif",
     ["metal", "spotty", "discoloration", "001", "nrm", "16", "2k", "metalness"]),
])
def test_words_of_splits_separators_camel_case_and_digits(name, words):
    assert naming.words_of(name) == words


@pytest.mark.parametrize("name, convention", [
    ("metal_0010_normal_directx_1k.png", "directx"), ("metal_0010_normal_opengl_1k.png", "opengl"),
    ("wood_nor_dx.png", "directx"), ("wood_nor_gl.png", "opengl"), ("MetalPlates001_1K_NormalDX.jpg", "directx"),
    ("MetalPlates001_1K_NormalGL.jpg", "opengl"), ("rock_gl_n.dds", "opengl"), ("wood_diffuse_dx.png", "auto"),
])
def test_normal_convention_reads_dx_and_gl_words(name, convention):
    assert naming.normal_convention_of(name) == convention


def test_vendor_maps_beside_a_diffuse_are_maps_not_inputs(tmp_path):
    maps = ["wood_nor_dx.png", "wood_nor_gl.png", "wood_gloss.png", "wood_bump.png", "wood_spec.png",
            "wood_disp.png", "wood_orm.png", "wood_arm.png", "wood_displacement.png"]
    _touch(tmp_path, "wood_diffuse.png", *maps)
    for name in maps:
        assert naming.is_node_wrangler_map(tmp_path / name), name
    assert not naming.is_node_wrangler_map(tmp_path / "wood_diffuse.png")
    assert naming.find_normal_for(tmp_path / "wood_diffuse.png") == tmp_path / "wood_nor_gl.png"


def test_find_normal_for_finds_a_dx_only_normal_and_vendor_resolutions(tmp_path):
    _touch(tmp_path, "wood_diffuse.png", "wood_nor_dx.png",
           "MetalPlates001_1K_Color.png", "MetalPlates001_1K_NormalDX.png")
    assert naming.find_normal_for(tmp_path / "wood_diffuse.png") == tmp_path / "wood_nor_dx.png"
    assert naming.find_normal_for(tmp_path / "MetalPlates001_1K_Color.png") == \
        tmp_path / "MetalPlates001_1K_NormalDX.png"


def test_diffuses_under_finds_each_diffuse_by_suffix_with_its_set_key(tmp_path):
    for name in ("b/Wood01_d.DDS", "b/Wood01_n.dds", "b/Wood01_rmaos.png", "a/stone.tga", "a/stone_N.tga",
                 "top.png", "notes.txt", "c/deep/Iron.png", "c/deep/Iron_g.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "d.png").mkdir()  # a folder with an image's name is not a file
    found = naming.diffuses_under(tmp_path)
    assert [(p.relative_to(tmp_path).as_posix(), key) for p, key in found] == [
        ("a/stone.tga", "a/stone"), ("b/Wood01_d.DDS", "b/Wood01"), ("c/deep/Iron.png", "c/deep/Iron"),
        ("top.png", "top"),
    ]
