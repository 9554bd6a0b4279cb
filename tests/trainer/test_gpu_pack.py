"""scripts/gpu/pack_library.py: the compact training-split shard a device machine trains on."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from addon.engine.imageio import write_png
from trainer.data import library
from trainer.data.common import encode_normal, periodic_resize
from trainer.data.synth import generate_material

from tests.trainer.helpers import import_library, licence, poly_haven_set

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu" / "pack_library.py"
SIZE = 64


def _load_script():
    spec = importlib.util.spec_from_file_location("pack_library", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pack_library = _load_script()


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """22 realistic tiling sets (20 held out, 2 for training) and 3 old-game Red Eclipse sets, 64 px."""
    root = tmp_path_factory.mktemp("packsrc")
    src = root / "src"
    licence(src)
    for i in range(22):
        poly_haven_set(src / f"m{i}", f"material_{chr(97 + i)}", generate_material(100 + i, SIZE, None))
    import_library(src, root / "lib")
    data = root / "re" / "data"
    (data / "textures").mkdir(parents=True)
    lines = []
    for i in range(3):
        m = generate_material(20 + i, SIZE, "concrete")
        write_png(data / "textures" / f"t{i}.png", m.albedo)
        write_png(data / "textures" / f"t{i}_nm.png", encode_normal(m.normal, directx=True))
        write_png(data / "textures" / f"t{i}_s.png", 1.0 - m.roughness)
        lines += [f'setshader bumpspecmapworld\ntexture 0 "textures/t{i}.png"', f'texture n "textures/t{i}_nm.png"',
                  f'texture s "textures/t{i}_s.png"']
    (data / "set.cfg").write_text("\n".join(lines) + "\n")
    import_library(data, root / "lib", source="re", finders=("red_eclipse",), licence="CC-BY-SA-3.0")
    return root / "lib"


def test_the_shard_holds_the_training_split_only_shrunk_and_readable(lib, tmp_path):
    index = library.load_index(lib)
    held = set(index["heldout"])
    train = {mid for mid, m in index["materials"].items() if m["split"] == "train"}
    assert len(held) == library.HELD_OUT_MIN and len(train) == 5  # 2 tiling truth + 3 old-game sets
    out = tmp_path / "shard"
    summary = pack_library.pack(lib, out, max_side=40, old_game_max_side=24, budget_mib=8, old_game_limit=0,
                                log=lambda *_: None)
    assert summary["materials"] == 5 and summary["heldout_left_out"] == 20

    packed = library.load_index(out)
    assert set(packed["materials"]) == train and packed["heldout"] == []
    assert packed["packed"]["heldout_left_out"] == 20
    for mid in held:
        assert not (out / "materials" / mid).exists()
    for mid in train:
        entry = json.loads((out / "materials" / mid / library.MATERIAL_FILE).read_text())
        assert entry["licence"] == index["materials"][mid]["licence"]  # licence and provenance kept
        assert entry["files"] == index["materials"][mid]["files"]
        side = 24 if entry["role"] == "old_game" else 40
        assert max(entry["size"]) <= side and entry["packed_from"]["size"] == [SIZE, SIZE]
        for png in (out / "materials" / mid).glob("*.png"):
            with Image.open(png) as image:
                assert max(image.size) <= side, png
                if png.stem == "height":
                    assert image.mode.startswith("I"), "height stays 16-bit"
                else:
                    assert image.mode in ("L", "RGB"), png

    truth = library.LibraryDataset(out, split="train")
    assert {truth.material_key(i) for i in range(len(truth))} == {m for m in train if m.startswith("test/")}
    old = library.LibraryDataset(out, split="train", role="old_game")
    assert len(old) == 3
    rng = np.random.default_rng(0)
    sample = truth.load(0, rng, (32, 32), resolution=64)
    assert sample["albedo"].shape == (3, 32, 32) and np.isfinite(sample["diffuse"]).all()
    assert old.load(0, rng, (32, 32), resolution=64)["diffuse"].shape == (3, 32, 32)

    # The two-channel normal decodes to the resized unit normals of the library.
    stored = library.LibraryDataset(lib, split="train").read_material(0)["normal"]
    expected = periodic_resize(stored, 40, 40)
    expected /= np.linalg.norm(expected, axis=-1, keepdims=True)
    assert np.abs(truth.read_material(0)["normal"] - expected).max() < 0.05


def test_old_game_sets_are_capped_height_first_and_repeatably(lib, tmp_path):
    one = pack_library.pack(lib, tmp_path / "a", old_game_limit=2, log=lambda *_: None)
    two = pack_library.pack(lib, tmp_path / "b", old_game_limit=2, log=lambda *_: None)
    assert one["old_game_left_out"] == 1 and one["per_source"]["re"]["materials"] == 2
    assert set(library.load_index(tmp_path / "a")["materials"]) == set(library.load_index(tmp_path / "b")["materials"])


def test_over_budget_fails_with_a_message_and_leaves_nothing(lib, tmp_path, capsys):
    out = tmp_path / "shard"
    with pytest.raises(pack_library.OverBudget, match="budget of 0.01 MiB"):
        pack_library.pack(lib, out, budget_mib=0.01, log=lambda *_: None)
    assert not out.exists()
    assert pack_library.main([str(lib), str(out), "--budget-mib", "0.01"]) == 1
    assert "error: the shard passed its budget of 0.01 MiB" in capsys.readouterr().err
    assert not out.exists()


def test_a_non_empty_out_or_a_non_library_is_refused(lib, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        pack_library.pack(lib, tmp_path / "full")
    with pytest.raises(ValueError, match="not a material library"):
        pack_library.pack(tmp_path / "full", tmp_path / "new")
