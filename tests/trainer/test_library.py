"""The material library: importing vendor folders, glTF, Godot and Red Eclipse sets, dedupe, split, reading."""
import json
import struct

import numpy as np
import pytest

from addon.engine.imageio import read_image, write_png
from trainer.contract import MAP_CHANNELS, VALID_INDEX
from trainer.data import library
from trainer.data.common import decode_normal, encode_normal
from trainer.data.synth import generate_material

from tests.trainer.helpers import import_library, licence, poly_haven_set

SIZE = 64


def _material(seed, category="stone", size=SIZE):
    return generate_material(seed, size, category)


def test_poly_haven_set_is_unpacked_with_its_convention_licence_and_origin(tmp_path):
    m = _material(1)
    licence(tmp_path / "src")
    poly_haven_set(tmp_path / "src" / "rock", "rock_wall", m)
    index = import_library(tmp_path / "src", tmp_path / "lib")
    (entry,) = index["materials"].values()
    assert entry["licence"] == "CC0-1.0" and entry["licence_file"].endswith("LICENSE.md")
    assert entry["maps"] == ["albedo", "ao", "height", "metallic", "normal", "roughness"]
    assert entry["colour_spaces"]["albedo"] == "srgb" and entry["colour_spaces"]["roughness"] == "linear"
    assert entry["normal_convention"] == {"declared": "opengl", "detected": "opengl", "used": "opengl",
                                          "disagree": False}
    assert entry["files"]["roughness"]["path"].endswith("rock_wall_arm_1k.png")
    assert entry["files"]["roughness"]["channel"] == 1 and len(entry["files"]["roughness"]["sha256"]) == 64
    assert entry["kind"] == "tiling"
    stored = read_material(tmp_path / "lib", entry)
    np.testing.assert_allclose(stored["roughness"], m.roughness, atol=1 / 255)
    np.testing.assert_allclose(stored["metallic"], m.metallic, atol=1 / 255)
    np.testing.assert_allclose(stored["ao"], m.ao, atol=1 / 255)
    np.testing.assert_allclose(stored["normal"], m.normal, atol=0.02)


def read_material(lib, entry):
    folder = lib / "materials" / entry["id"]
    out = {n: read_image(folder / f"{n}.png") for n in entry["maps"]}
    out = {n: (v[..., 0] if v.ndim == 3 and n not in ("albedo", "normal", "diffuse") else v) for n, v in out.items()}
    out["normal"] = decode_normal(out["normal"][..., :3], directx=False)
    return out


def test_gloss_becomes_roughness_and_a_mislabelled_normal_is_flagged(tmp_path):
    m = _material(2, "wood")
    src = tmp_path / "src"
    licence(src)
    write_png(src / "Planks001_1K_Color.png", m.albedo)
    write_png(src / "Planks001_1K_Gloss.png", 1.0 - m.roughness)
    # Declared OpenGL by its name, stored DirectX: the curl test catches it and the pixels win.
    write_png(src / "Planks001_1K_NormalGL.png", encode_normal(m.normal, directx=True))
    (entry,) = import_library(src, tmp_path / "lib")["materials"].values()
    assert entry["normal_convention"]["declared"] == "opengl"
    assert entry["normal_convention"]["detected"] == "directx" and entry["normal_convention"]["disagree"]
    stored = read_material(tmp_path / "lib", entry)
    np.testing.assert_allclose(stored["roughness"], m.roughness, atol=1.5 / 255)
    np.testing.assert_allclose(stored["normal"], m.normal, atol=0.02)


def test_copies_are_imported_once_but_look_alike_materials_are_kept(tmp_path):
    src = tmp_path / "src"
    licence(src)
    m = _material(3)
    poly_haven_set(src / "a", "rock", m)
    poly_haven_set(src / "b", "rock_copy", m, ext="jpg")             # the same texture, recompressed
    other = _material(3)
    other.albedo = np.clip(1.0 - other.albedo, 0, 1)                  # same structure, other colour
    poly_haven_set(src / "c", "rock_inverse", other)
    poly_haven_set(src / "d", "moss", _material(4, "ground"))
    index = import_library(src, tmp_path / "lib")
    assert sorted(m["name"] for m in index["materials"].values()) == ["moss", "rock", "rock_inverse"]
    (rock,) = [m for m in index["materials"].values() if m["name"] == "rock"]
    assert rock["near_copies"] and "rock_copy" in rock["near_copies"][0]
    again = import_library(src, tmp_path / "lib")  # importing a source twice adds nothing
    assert len(again["materials"]) == 3


def test_unknown_or_non_commercial_licences_are_skipped(tmp_path):
    m = _material(5)
    poly_haven_set(tmp_path / "nc", "rock", m)
    licence(tmp_path / "nc", "Licensed CC BY-NC 4.0")
    poly_haven_set(tmp_path / "none", "rock", _material(6))
    report = library.DataReport()
    library.import_sources([tmp_path / "nc", tmp_path / "none"], tmp_path / "lib",
                           library.ImportConfig(source="t"), report)
    assert library.load_index(tmp_path / "lib")["materials"] == {}
    assert set(report.skipped) == {"licence CC-BY-NC is not one training may use",
                                   "licence unknown is not one training may use"}
    index = import_library(tmp_path / "none", tmp_path / "lib", licence="CC-BY-4.0")  # stated by the user
    assert [m["licence"] for m in index["materials"].values()] == ["CC-BY-4.0"]


def _gltf(folder, m, uv_quad):
    """A glTF with one quad whose UVs cover `uv_quad`, and the four PBR textures."""
    folder.mkdir(parents=True, exist_ok=True)
    write_png(folder / "base.png", m.albedo)
    write_png(folder / "mr.png", np.stack([np.zeros_like(m.roughness), m.roughness, m.metallic], -1))
    write_png(folder / "n.png", encode_normal(m.normal, directx=False))
    write_png(folder / "occ.png", np.stack([m.ao] * 3, -1))
    (u0, v0), (u1, v1) = uv_quad
    uv = np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]], np.float32)
    indices = np.array([0, 1, 2, 0, 2, 3], np.uint16)
    (folder / "m.bin").write_bytes(uv.tobytes() + indices.tobytes())
    gltf = {
        "asset": {"version": "2.0"},
        "buffers": [{"uri": "m.bin", "byteLength": 44}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 32}, {"buffer": 0, "byteOffset": 32, "byteLength": 12}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 4, "type": "VEC2"},
                      {"bufferView": 1, "componentType": 5123, "count": 6, "type": "SCALAR"}],
        "meshes": [{"primitives": [{"attributes": {"TEXCOORD_0": 0}, "indices": 1, "material": 0}]}],
        "images": [{"uri": u} for u in ("base.png", "mr.png", "n.png", "occ.png")],
        "textures": [{"source": i} for i in range(4)],
        "materials": [{"name": "body", "pbrMetallicRoughness": {
            "baseColorTexture": {"index": 0}, "metallicRoughnessTexture": {"index": 1}, "metallicFactor": 0.5},
            "normalTexture": {"index": 2}, "occlusionTexture": {"index": 3}}],
    }
    (folder / "model.gltf").write_text(json.dumps(gltf))


def test_gltf_roles_come_from_the_json_and_the_atlas_mask_from_the_uvs(tmp_path):
    m = _material(7, "metal")
    licence(tmp_path / "src", 'SPDX license identifier: "CC-BY-4.0"')
    _gltf(tmp_path / "src" / "glTF", m, ((0.0, 0.0), (0.5, 1.0)))
    (entry,) = import_library(tmp_path / "src", tmp_path / "lib", finders=("gltf",))["materials"].values()
    assert entry["name"] == "model_body" and entry["licence"] == "CC-BY-4.0" and entry["kind"] == "atlas"
    assert 0.5 <= entry["used_area"] <= 0.6  # the left half, dilated by the gutter
    mask = read_image(tmp_path / "lib" / "materials" / entry["id"] / "mask.png")
    assert mask[:, : SIZE // 2 - 3].min() == 1.0 and mask[:, SIZE // 2 + 3:].max() == 0.0
    stored = read_material(tmp_path / "lib", entry)
    np.testing.assert_allclose(stored["roughness"], m.roughness, atol=1 / 255)
    np.testing.assert_allclose(stored["metallic"], 0.5 * m.metallic, atol=1 / 255)  # the metallicFactor


def test_godot_material_reads_its_orm_channels(tmp_path):
    m = _material(8, "metal")
    src = tmp_path / "src"
    licence(src, "Creative Commons Attribution License\nversion 3.0 (CC-BY 3.0)")
    (src / "project.godot").write_text("")
    (src / "tex").mkdir()
    write_png(src / "tex" / "plate_albedo.png", m.albedo)
    write_png(src / "tex" / "plate_normal.png", encode_normal(m.normal, directx=False))
    write_png(src / "tex" / "plate_orm.png", np.stack([m.ao, m.roughness, m.metallic], -1))
    (src / "plate.tres").write_text(
        '[gd_resource type="StandardMaterial3D" format=3]\n'
        '[ext_resource type="Texture2D" path="res://tex/plate_albedo.png" id="1"]\n'
        '[ext_resource type="Texture2D" path="res://tex/plate_normal.png" id="2"]\n'
        '[ext_resource type="Texture2D" path="res://tex/plate_orm.png" id="3"]\n[resource]\n'
        'resource_name = "plate"\nalbedo_texture = ExtResource("1")\nmetallic = 1.0\n'
        'metallic_texture = ExtResource("3")\nmetallic_texture_channel = 2\nroughness_texture = ExtResource("3")\n'
        'roughness_texture_channel = 1\nnormal_enabled = true\nnormal_texture = ExtResource("2")\n'
        'ao_enabled = true\nao_texture = ExtResource("3")\n')
    (entry,) = import_library(src, tmp_path / "lib", finders=("godot",))["materials"].values()
    assert entry["licence"] == "CC-BY-3.0" and entry["finder"] == "godot"
    stored = read_material(tmp_path / "lib", entry)
    for name in ("ao", "roughness", "metallic"):
        np.testing.assert_allclose(stored[name], getattr(m, name), atol=1 / 255)


def _red_eclipse(root, count, heights=()):
    """`count` Red Eclipse slots; heights[i] (when given) is slot i's `z` height map."""
    data = root / "data"
    (data / "textures" / "set").mkdir(parents=True)
    lines = []
    for i in range(count):
        m = _material(20 + i, "concrete")
        write_png(data / "textures" / "set" / f"t{i}.png", m.albedo)
        write_png(data / "textures" / "set" / f"t{i}_nm.png", encode_normal(m.normal, directx=True))
        write_png(data / "textures" / "set" / f"t{i}_s.png", 1.0 - m.roughness)
        lines += [f'setshader bumpspecmapworld\ntexture 0 "textures/set/t{i}.png"',
                  f'texture n "textures/set/t{i}_nm.png"', f'texture s "textures/set/t{i}_s.png"']
        if i < len(heights):
            write_png(data / "textures" / "set" / f"t{i}_h.png", heights[i](m))
            lines.append(f'texture z "textures/set/t{i}_h.png"')
    (data / "set.cfg").write_text("\n".join(lines) + "\n")
    licence(root, "CC-BY-SA-3.0")
    return data


def test_red_eclipse_slots_become_old_game_sets_read_without_targets(tmp_path):
    data = _red_eclipse(tmp_path / "re", 2)
    index = import_library(data, tmp_path / "lib", finders=("red_eclipse",), licence="CC-BY-SA-3.0")
    assert [m["maps"] for m in index["materials"].values()] == [["diffuse", "normal", "specular"]] * 2
    assert {m["normal_convention"]["detected"] for m in index["materials"].values()} == {"directx"}
    dataset = library.LibraryDataset(tmp_path / "lib", role="old_game")
    sample = dataset.load(0, np.random.default_rng(0), (32, 32), resolution=SIZE)
    assert sample["diffuse"].shape == (3, 32, 32) and float(sample["valid"].sum()) == 0.0
    assert int(sample["domain"]) == 1


def test_an_old_game_sets_own_height_is_its_target_only_where_it_describes_its_normal(tmp_path):
    # Slot 0's height is the one its normal was made from; slot 1's is turned a quarter, so its
    # slopes contradict the normal's: a displacement of some other surface, no target.
    data = _red_eclipse(tmp_path / "re", 2, heights=(lambda m: m.height, lambda m: np.rot90(m.height).copy()))
    import_library(data, tmp_path / "lib", finders=("red_eclipse",), licence="CC-BY-SA-3.0")
    dataset = library.LibraryDataset(tmp_path / "lib", role="old_game")
    assert [e["maps"] for e in dataset.entries] == [["diffuse", "height", "normal", "specular"]] * 2
    agreeing, contradicting = (dataset.load(i, np.random.default_rng(0), (SIZE, SIZE), resolution=SIZE)
                               for i in range(2))
    height = VALID_INDEX["height"]
    assert float(agreeing["valid"][height]) == 1.0 and float(agreeing["valid"].sum()) == 1.0
    stored = dataset.read_material(0)["height"]  # a texture-sized crop is the stored map rolled
    np.testing.assert_allclose(np.sort(agreeing["maps"][MAP_CHANNELS.index("height")].numpy().ravel()),
                               np.sort(stored.ravel()), atol=1e-6)
    assert float(contradicting["valid"].sum()) == 0.0


def test_split_holds_out_tiling_materials_for_good_and_training_never_reads_them(tmp_path):
    src = tmp_path / "src"
    licence(src)
    for i in range(24):
        poly_haven_set(src / f"m{i}", f"material_{chr(97 + i)}", _material(100 + i, None))
    index = import_library(src, tmp_path / "lib")
    held = set(index["heldout"])
    assert len(held) == library.HELD_OUT_MIN and all(index["materials"][h]["split"] == "heldout" for h in held)
    poly_haven_set(tmp_path / "more" / "x", "extra", _material(300, "wood"))
    licence(tmp_path / "more")
    index = import_library(tmp_path / "more", tmp_path / "lib", source="more")
    assert held <= set(index["heldout"])  # an import never moves a held-out material back
    train = library.LibraryDataset(tmp_path / "lib", split="train")
    assert not held & {train.material_key(i) for i in range(len(train))}
    train.entries.append(index["materials"][sorted(held)[0]])  # even when asked directly
    with pytest.raises(library.DataSourceError, match="held out"):
        train.read_material(len(train) - 1)


def _one_material_heldout(tmp_path, m):
    """A library of one Poly Haven set (held out, being the only tiling material) as a dataset."""
    licence(tmp_path / "src")
    poly_haven_set(tmp_path / "src" / m.category, m.category, m)
    import_library(tmp_path / "src", tmp_path / "lib")
    return library.LibraryDataset(tmp_path / "lib", split="heldout")


def test_truth_samples_get_old_game_inputs_rendered_from_the_truth(tmp_path):
    dataset = _one_material_heldout(tmp_path, _material(9, "wood"))
    sample = dataset.load(0, np.random.default_rng(1), (32, 32), resolution=SIZE)
    assert sample["valid"].tolist()[:5] == [1.0] * 5
    assert sample["diffuse"].shape == sample["albedo"].shape == (3, 32, 32)
    assert not np.allclose(sample["diffuse"], sample["albedo"], atol=0.02)  # something was baked in
    assert abs(float(sample["diffuse"].mean() - sample["albedo"].mean())) < 0.25


def test_a_crop_is_a_window_of_the_whole_textures_inputs_and_height_prior(tmp_path):
    # Conversion renders nothing and integrates the whole texture; a training crop must see the same
    # pixels: with the same draws, a small crop is the corner of the texture-sized one.
    dataset = _one_material_heldout(tmp_path, _material(4, "stone"))
    whole = dataset.load(0, np.random.default_rng(5), (SIZE, SIZE), resolution=SIZE)
    window = dataset.load(0, np.random.default_rng(5), (24, 40), resolution=SIZE)
    for key in ("diffuse", "normal", "height_prior", "maps"):
        np.testing.assert_allclose(window[key], whole[key][:, :24, :40], atol=1e-6, err_msg=key)


def test_a_truth_materials_height_target_is_its_clean_normals_integral_even_without_a_height_map(tmp_path):
    from trainer.data.sample import texture_height_prior
    m = _material(8, "stone")
    licence(tmp_path / "src")
    poly_haven_set(tmp_path / "src" / "s", "stone", m)
    (tmp_path / "src" / "s" / "stone_disp_1k.png").unlink()
    import_library(tmp_path / "src", tmp_path / "lib")
    dataset = library.LibraryDataset(tmp_path / "lib", split="heldout")
    sample = dataset.load(0, np.random.default_rng(2), (SIZE, SIZE), resolution=SIZE)
    assert sample["valid"][VALID_INDEX["height"]] == 1.0
    clean = dataset.read_material(0)["normal"]
    expected = texture_height_prior(clean / np.linalg.norm(clean, axis=-1, keepdims=True))
    # The crop is a wrap-around shift of the whole texture: compare the shift-free amplitude spectra.
    spectrum = np.abs(np.fft.fft2(sample["maps"][3].numpy()))
    np.testing.assert_allclose(spectrum, np.abs(np.fft.fft2(expected)), atol=1e-3 * spectrum.max())
    assert not np.allclose(sample["maps"][3], sample["height_prior"][0], atol=1e-3)  # not the degraded input's


def test_a_material_is_decoded_once_and_its_cached_maps_stay_unchanged(tmp_path, monkeypatch):
    dataset = _one_material_heldout(tmp_path, _material(6, "wood"))
    reads = []
    read = dataset.read_material
    monkeypatch.setattr(dataset, "read_material", lambda i: reads.append(i) or read(i))
    first = dataset.load(0, np.random.default_rng(3), (SIZE, SIZE), resolution=SIZE)
    first["albedo"] += 1.0  # a sample is the caller's to change
    again = dataset.load(0, np.random.default_rng(3), (SIZE, SIZE), resolution=SIZE)
    assert reads == [0]
    np.testing.assert_allclose(first["albedo"] - 1.0, again["albedo"], atol=1e-6)
    dataset.load(0, np.random.default_rng(3), (16, 16), resolution=SIZE // 2)  # another size: read
    assert reads == [0, 0]


def test_debian_copyright_states_each_files_licence(tmp_path):
    copyright_file = tmp_path / "copyright"
    copyright_file.write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: someone\nLicense: CC-BY-SA-3.0+\n\n"
        "Files: data/textures/set/t1*\n data/other/*\nCopyright: other\nLicense: CC-BY-NC-3.0\n")
    data = _red_eclipse(tmp_path / "re", 2)
    report = library.DataReport()
    library.import_sources([data], tmp_path / "lib", library.ImportConfig(source="re", finders=("red_eclipse",),
                                                                          dep5=copyright_file), report)
    (entry,) = library.load_index(tmp_path / "lib")["materials"].values()
    assert entry["name"] == "t0" and entry["licence"] == "CC-BY-SA-3.0"
    assert report.skipped == {"licence CC-BY-NC-3.0 is not one training may use": 1}


def test_concat_reads_two_sources_as_one():
    from trainer.data.mixing import Concat

    class Source:
        domain, report = 0, None

        def __init__(self, keys):
            self.keys = keys

        def __len__(self):
            return len(self.keys)

        def material_key(self, i):
            return self.keys[i]

        def labels_of(self, i):
            return None

        def load(self, i, rng, size, resolution=None):
            return self.keys[i]

    both = Concat([Source(["a", "b"]), Source(["c"])])
    assert len(both) == 3 and [both.material_key(i) for i in range(3)] == ["a", "b", "c"]
    assert both.load(2, None, (4, 4)) == "c"


def test_the_first_licence_statement_of_a_credits_file_is_the_files_licence(tmp_path):
    (tmp_path / "CREDITS.md").write_text("Textures from Poly Haven, licensed under CC0 1.0.\n\n"
                                         "## Flashlight model\n- License: CC Attribution (CC BY 4.0)\n")
    (tmp_path / "a").mkdir()
    assert library.licence_of(tmp_path / "a" / "x.png", tmp_path) == ("CC0-1.0", str(tmp_path / "CREDITS.md"))


def test_supertuxkart_gloss_maps_give_roughness_and_metallic(tmp_path):
    m = _material(11, "metal")
    data = tmp_path / "data"
    (data / "textures").mkdir(parents=True)
    (data / "karts" / "k").mkdir(parents=True)
    write_png(data / "karts" / "k" / "body.png", m.albedo)
    write_png(data / "textures" / "body_nm.png", encode_normal(m.normal, directx=False))
    write_png(data / "karts" / "k" / "body_gloss.png", np.stack([1 - m.roughness, m.metallic, 0 * m.ao], -1))
    (data / "karts" / "k" / "materials.xml").write_text(
        '<materials><material name="body.png" gloss-map="body_gloss.png" normal-map="body_nm.png"/>'
        '<material name="decal.png" gloss-map="body_gloss.png"/></materials>')
    (entry,) = import_library(data, tmp_path / "lib", finders=("supertuxkart",), licence="CC-BY-SA-3.0",
                       stylised=True)["materials"].values()
    assert entry["stylised"] and entry["split"] == "train"
    stored = read_material(tmp_path / "lib", entry)
    np.testing.assert_allclose(stored["roughness"], m.roughness, atol=1.5 / 255)
    np.testing.assert_allclose(stored["metallic"], m.metallic, atol=1 / 255)


def test_command_line_imports_and_summarises(tmp_path, capsys):
    from trainer.__main__ import main

    licence(tmp_path / "src")
    poly_haven_set(tmp_path / "src" / "a", "rock", _material(1))
    poly_haven_set(tmp_path / "src" / "b", "skip_me", _material(13, "wood"))
    assert main(["data", "import", str(tmp_path / "src"), "--out", str(tmp_path / "lib"), "--source", "cli",
                 "--exclude", "skip_me"]) == 0
    assert "cli: 1 materials" in capsys.readouterr().out
    assert main(["data", "summary", str(tmp_path / "lib")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["source"] == {"cli": 1} and summary["licence"] == {"CC0-1.0": 1}
    assert summary["maps"]["roughness"] == 1 and summary["heldout_tiling"] == 1
    assert main(["data", "import", str(tmp_path / "missing"), "--out", str(tmp_path / "lib"), "--source", "x"]) == 2


def _stored(m, kind="tiling", **overrides):
    maps = {"albedo": m.albedo, "normal": m.normal, "ao": m.ao, "height": m.height, **overrides}
    return {"kind": kind}, maps


def test_only_maps_that_describe_the_material_count_as_truth():
    m = _material(11, "stone", size=128)
    assert m.ao.min() < library.UNAUTHORED_AO_MIN and library.height_agrees_with_normal(m.height, m.normal)
    assert library.unusable_truth(*_stored(m)) == []
    # Occlusion baked from a mesh into an object atlas is not the material's.
    assert library.unusable_truth(*_stored(m, kind="atlas")) == ["ao"]
    # A packed ORM channel left white, a flat height, a height of another surface (inverted; transposed).
    white = np.ones_like(m.ao)
    assert library.unusable_truth(*_stored(m, ao=white, height=np.full_like(m.height, 0.5))) == ["ao", "height"]
    assert library.unusable_truth(*_stored(m, height=1.0 - m.height)) == ["height"]
    assert library.unusable_truth(*_stored(m, height=np.ascontiguousarray(m.height.T))) == ["height"]


def test_training_and_evaluation_skip_the_same_non_truth(tmp_path):
    from trainer.contract import VALID_TARGETS
    from trainer.evaluate import library_cases

    m = _material(12, "metal")
    licence(tmp_path / "src")
    folder = tmp_path / "src" / "plate"
    poly_haven_set(folder, "plate", m)
    write_png(folder / "plate_arm_1k.png", np.stack([np.ones_like(m.ao), m.roughness, m.metallic], -1))
    import_library(tmp_path / "src", tmp_path / "lib")
    dataset = library.LibraryDataset(tmp_path / "lib", split="heldout")
    valid = dict(zip(VALID_TARGETS, dataset.load(0, np.random.default_rng(0), (32, 32), resolution=SIZE)["valid"]))
    assert float(valid["ao"]) == 0.0 and float(valid["height"]) == 1.0 and float(valid["roughness"]) == 1.0
    (case,) = library_cases(tmp_path / "lib", size=SIZE)
    assert "ao" not in case.truth and {"height", "roughness", "metallic"} <= set(case.truth)
