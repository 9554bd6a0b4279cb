"""Helpers several trainer test modules share (test modules never import one another)."""
from __future__ import annotations

import numpy as np

from addon.engine.imageio import write_png
from trainer.data import library
from trainer.data.common import encode_normal


def licence(folder, text="All textures: CC0 1.0 Universal"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "LICENSE.md").write_text(text)


def poly_haven_set(folder, name, m, ext="png"):
    """A Poly Haven folder: diff, DirectX and OpenGL normals, packed ARM (R ao, G rough, B metal), disp."""
    folder.mkdir(parents=True, exist_ok=True)
    write_png(folder / f"{name}_diff_1k.{ext}", m.albedo) if ext == "png" else save_jpeg(folder / f"{name}_diff_1k.jpg", m.albedo)
    write_png(folder / f"{name}_nor_dx_1k.png", encode_normal(m.normal, directx=True))
    write_png(folder / f"{name}_nor_gl_1k.png", encode_normal(m.normal, directx=False))
    write_png(folder / f"{name}_arm_1k.png", np.stack([m.ao, m.roughness, m.metallic], -1))
    write_png(folder / f"{name}_disp_1k.png", m.height, bits=16)


def save_jpeg(path, rgb):
    from PIL import Image
    Image.fromarray(np.round(rgb * 255).astype(np.uint8)).save(path, quality=95)


def import_library(roots, lib, source="test", **kwargs):
    return library.import_sources([roots] if not isinstance(roots, list) else roots, lib,
                                  library.ImportConfig(source=source, **kwargs))


# A two-phase plan in the shipped plan's format: full training, then two independent LoRA-phase jobs.
SMALL_PLAN = """
name = "small"
seed = 3
holdout_fraction = 0.25
[early_stop]
patience = 4
min_rel_improvement = 0.001
[gate]
window = 3
skyrim_max_rise = 0.05
matsynth_max_rise = {matsynth_max_rise}
[lora]
rank = 2
[phases.P1]
init = "new"
epochs = [3, 3]
batch_size = 2
gate = ["matsynth"]
data = {{ mix = {{ matsynth = 1.0 }}, resolution = 64, augment = true, composite_2crop = 0.3, composite_4crop = 0.0, photometric_strength = 0.0 }}
optimizer = {{ name = "adamw", lr = 1e-3, betas = [0.9, 0.999], weight_decay = 1e-2 }}
scheduler = {{ name = "onecycle", max_lr = 1e-3, pct_start = 0.3 }}
trainable = {{ classifier = ["all"], metallic_seg = ["all"], albedo = ["all"], maps = ["all"] }}
[phases.P2]
init = "previous"
epochs = [2, 2]
batch_size = 2
add_lora = true
data = {{ mix = {{ matsynth = 0.5, skyrim = 0.5 }}, resolution = 64, augment = true, composite_2crop = 0.0, composite_4crop = 0.0, photometric_strength = 1.0 }}
optimizer = {{ name = "adam", lr = 1e-3, betas = [0.9, 0.9995], weight_decay = 0.0 }}
scheduler = {{ name = "exponential", gamma = 0.9 }}
[phases.P2.jobs.seg]
trainable = {{ metallic_seg = ["decoder", "lora"] }}
[phases.P2.jobs.rough]
trainable = {{ maps = ["head:roughness"] }}
"""
SMALL_ARGS = ["--synthetic", "6", "--models-preset", "tiny", "--max-steps", "3", "--val-batches", "1", "--no-export"]


def small_plan(tmp_path, matsynth_max_rise=0.10) -> str:
    path = tmp_path / "small.toml"
    path.write_text(SMALL_PLAN.format(matsynth_max_rise=matsynth_max_rise), encoding="utf-8")
    return str(path)
