"""Per-scene settings of a run and the summary of the last run (shown in the panel)."""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, PointerProperty, StringProperty


class PBRForgeSceneSettings(bpy.types.PropertyGroup):
    # Image pair (convert two files without a material).
    diffuse_path: StringProperty(name="Diffuse", subtype='FILE_PATH', description="Diffuse texture file")
    normal_path: StringProperty(name="Normal", subtype='FILE_PATH', description="Normal map file (optional)")
    # Batch.
    batch_input_dir: StringProperty(name="Mod Folder", subtype='DIR_PATH',
                                    description="Folder with the mod's textures (read only)")
    batch_output_dir: StringProperty(name="Output Folder", subtype='DIR_PATH',
                                     description="Folder the converted set is written to")
    # Material conversions.
    pack_images: BoolProperty(name="Pack Images", default=False,
                              description="Embed the converted maps in the .blend file")

    # Last run (read-only in the UI).
    last_message: StringProperty(name="Result")
    last_maps: IntProperty(name="Maps Written")
    last_seconds: FloatProperty(name="Seconds")
    last_provider: StringProperty(name="Provider")
    last_warnings: StringProperty(name="Warnings")

    def record(self, *, message: str, maps: int, seconds: float, provider: str, warnings: list[str]):
        self.last_message = message
        self.last_maps = maps
        self.last_seconds = seconds
        self.last_provider = provider
        self.last_warnings = " | ".join(dict.fromkeys(warnings))  # keep order, drop repeats


def register():
    bpy.utils.register_class(PBRForgeSceneSettings)
    bpy.types.Scene.pbr_forge = PointerProperty(type=PBRForgeSceneSettings)
    # The material a converted material was made from: what "Revert" puts back.
    bpy.types.Material.pbr_forge_source = PointerProperty(
        type=bpy.types.Material, name="PBR Forge Source",
        description="The material this PBR material was converted from",
    )


def unregister():
    del bpy.types.Material.pbr_forge_source
    del bpy.types.Scene.pbr_forge
    bpy.utils.unregister_class(PBRForgeSceneSettings)
