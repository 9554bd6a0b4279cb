"""Add-on preferences: where the models are, how to run them, where and how to write outputs."""
from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from .engine.batch import FORMATS
from .engine.manifest import default_models_dir
from .engine.normalmaps import NORMAL_CONVENTIONS as ENGINE_NORMAL_CONVENTIONS
from .engine.sessions import PROVIDER_CHOICES

# Preference value (Blender enums are upper case by convention) -> the engine's name. The engine's
# tuples are the one definition; the EnumProperty items below add only labels (a test checks they match).
PROVIDERS = {name.upper(): name for name in PROVIDER_CHOICES}
NAMING_PRESETS = {name.upper(): name for name in FORMATS}   # -> the batch runner's `fmt`
NORMAL_CONVENTIONS = {name.upper(): name for name in ENGINE_NORMAL_CONVENTIONS}


class PBRForgePreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    models_dir: StringProperty(
        name="Models Folder",
        description="Folder with the ONNX models and manifest.json; empty uses the set shipped with the add-on",
        subtype='DIR_PATH',
        default="",
    )
    provider: EnumProperty(
        name="Execution Provider",
        description="Where the models run",
        items=[
            ("AUTO", "Auto", "The best GPU provider available, else the CPU"),
            ("CPU", "CPU", "Run on the processor (always available)"),
            ("CUDA", "CUDA", "NVIDIA GPU (needs the CUDA build of the extension)"),
            ("DIRECTML", "DirectML", "Any DirectX 12 GPU on Windows (needs the DirectML build)"),
            ("COREML", "CoreML", "Apple silicon GPU / Neural Engine"),
        ],
        default="AUTO",
    )
    custom_tiling: BoolProperty(
        name="Custom Tiling",
        description="Choose the tile size and overlap yourself instead of the models' recommended values",
        default=False,
    )
    tile_size: IntProperty(
        name="Tile Size",
        description="Largest tile, in pixels per side, the models run on; smaller uses less memory",
        default=640, min=128, max=4096, step=32,
    )
    tile_overlap: IntProperty(
        name="Tile Overlap",
        description="Pixels shared by neighbouring tiles, blended to hide seams",
        default=64, min=0, max=1024,
    )
    output_dir: StringProperty(
        name="Output Folder",
        description="Where converted maps are written; empty uses a 'pbr_forge' folder beside the .blend file "
                    "(and packs the maps into a .blend that was never saved)",
        subtype='DIR_PATH',
        default="",
    )
    naming_preset: EnumProperty(
        name="Output Set",
        items=[
            ("BLENDER", "Blender PNG Set", "albedo, roughness, metallic, ao, height and normal PNGs"),
            ("TRUEPBR", "True PBR DDS Set", "Community Shaders True PBR DDS files and patcher JSON (batch)"),
            ("BOTH", "Both", "Both sets"),
        ],
        default="BLENDER",
    )
    normal_convention: EnumProperty(
        name="Input Normals",
        description="Convention of the input normal maps",
        items=[
            ("AUTO", "Auto", "Skyrim '_n' files are DirectX, Blender-style names OpenGL, else guessed from the pixels"),
            ("DIRECTX", "DirectX", "Green points down (Skyrim, Unreal)"),
            ("OPENGL", "OpenGL", "Green points up (Blender, MatSynth)"),
        ],
        default="AUTO",
    )
    overwrite: BoolProperty(
        name="Overwrite Existing Files",
        description="Replace output files that already exist instead of stopping",
        default=False,
    )

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "models_dir")
        if not self.models_dir:
            layout.label(text=f"Using the shipped models: {default_models_dir()}", icon='INFO')
        layout.prop(self, "provider")
        layout.prop(self, "custom_tiling")
        row = layout.row(align=True)
        row.enabled = self.custom_tiling
        row.prop(self, "tile_size")
        row.prop(self, "tile_overlap")
        layout.prop(self, "output_dir")
        layout.prop(self, "naming_preset")
        layout.prop(self, "normal_convention")
        layout.prop(self, "overwrite")

    # Resolved settings, in the engine's terms.
    def resolved_models_dir(self) -> Path:
        return Path(bpy.path.abspath(self.models_dir)) if self.models_dir else Path(default_models_dir())

    def resolved_output_dir(self) -> Path | None:
        """Where maps go; None when there is no place that outlives the extension (no folder set and
        the .blend never saved): the conversion then packs them into the .blend."""
        if self.output_dir:
            return Path(bpy.path.abspath(self.output_dir))
        if bpy.data.filepath:
            return Path(bpy.path.abspath("//pbr_forge"))
        return None


def get_preferences(context: bpy.types.Context) -> PBRForgePreferences:
    return context.preferences.addons[__package__].preferences


def register():
    bpy.utils.register_class(PBRForgePreferences)


def unregister():
    bpy.utils.unregister_class(PBRForgePreferences)
