"""Convert materials and image pairs into new PBR materials (non-destructive).

The original material and its images are never modified: the result is a new material that
replaces the original in its slot, while the original keeps a fake user so Revert is one click.
Maps are written into a hidden staging folder inside the output folder and moved into place only
when every file is complete, so a cancelled or failed run leaves no partial files. With no output
folder set and a .blend that was never saved, the maps are packed into the .blend instead: a folder
of the extension's own would be deleted with the extension, and the images with it.
"""
from __future__ import annotations

import functools

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np
from bpy.props import StringProperty

from ..blender.detect import check_normal_statistics, detect_inputs
from ..blender.images import image_file_path, image_to_array
from ..blender.material import build_material
from ..engine import naming, validation
from ..engine.errors import OutputExists, PBRForgeError, user_sentence
from ..engine.imageio import read_image
from ..engine.outputs import write_png_set
from ..preferences import NORMAL_CONVENTIONS, PROVIDERS, get_preferences
from ..properties import record_check
from .driver import RunSummary, SteppedOperator, redraw_panels


@dataclass
class RunSettings:
    """Everything a conversion needs from the preferences and the scene, read once per run."""
    models_dir: Path
    provider: str
    tile: int | None  # None: the manifest's recommendation
    overlap: int | None
    output_dir: Path | None  # None: pack the maps into the (unsaved) .blend
    normal_convention: str  # "auto", "directx" or "opengl"
    overwrite: bool
    pack_images: bool

    @classmethod
    def from_context(cls, context) -> "RunSettings":
        prefs = get_preferences(context)
        return cls(
            models_dir=prefs.resolved_models_dir(),
            provider=PROVIDERS[prefs.provider],
            # None: the tile size and overlap the models' manifest recommends.
            tile=prefs.tile_size if prefs.custom_tiling else None,
            overlap=prefs.tile_overlap if prefs.custom_tiling else None,
            output_dir=prefs.resolved_output_dir(),
            normal_convention=NORMAL_CONVENTIONS[prefs.normal_convention],
            overwrite=prefs.overwrite,
            pack_images=context.scene.pbr_forge.pack_images,
        )

    def converter(self):
        """The run's one Converter (made on first use): every conversion of the run shares it, its
        manifest and its model sessions."""
        return self._converter

    @functools.cached_property
    def _converter(self):
        # Imported here so registering the add-on never loads onnxruntime (startup stays fast).
        from ..engine.pipeline import Converter

        return Converter(models_dir=self.models_dir, provider=self.provider, tile=self.tile, overlap=self.overlap)

    @property
    def manifest(self):
        """The models' manifest, read once per run (the run's converter reads it)."""
        return self.converter().manifest

    def png_suffixes(self) -> dict[str, str]:
        return dict(self.manifest.png_suffixes)

    def refuse_converted_input(self, path: Path) -> None:
        """Converting a PBR Forge output again would make `x_albedo_albedo.png`: say so instead. A file
        is taken for an output only when the whole PNG set it belongs to lies beside it, so a vendor's
        own `rock_albedo.png` still converts."""
        suffixes = self.png_suffixes()
        for suffix in filter(None, suffixes.values()):
            if path.stem.lower().endswith(suffix.lower()):
                names = naming.png_set_names(path.stem[:-len(suffix)], suffixes)
                if all((path.parent / name).is_file() for name in names.values()):
                    raise PBRForgeError(f"'{path.name}' is a map PBR Forge made; convert the original diffuse "
                                        "texture instead.")


class _Conversion:
    """One diffuse (+ normal) -> PNG set -> new material. Subclasses say where the inputs come from
    (`_read_inputs`) and what happens to the new material (`_place`)."""

    def __init__(self, settings: RunSettings, label: str):
        self.settings = settings
        self.label = label
        self._job = None
        self._name = ""
        self._targets: dict[str, Path] = {}
        self._original = None  # the input's validation preview, taken before the job frees the input
        self._manifest = None  # the converter's, for the conventions the material follows
        self.material: bpy.types.Material | None = None

    def _read_inputs(self) -> tuple[np.ndarray, np.ndarray | None, str, str]:
        """(diffuse, normal or None, normal convention, output base name)."""
        raise NotImplementedError

    def _place(self, material: bpy.types.Material) -> None:
        raise NotImplementedError

    def start(self) -> None:
        diffuse, normal, convention, self._name = self._read_inputs()
        if self.settings.normal_convention != "auto":
            convention = self.settings.normal_convention
        names = naming.png_set_names(self._name, self.settings.png_suffixes())
        if self.settings.output_dir is not None:
            self._targets = {role: self.settings.output_dir / file_name for role, file_name in names.items()}
            self._check_targets_free()
        self._original = validation.original_preview_or_none(diffuse, normal)
        converter = self.settings.converter()
        self._manifest = converter.manifest
        self._job = converter.start(diffuse, normal, normal_convention=convention)

    def step(self) -> float:
        return self._job.step()

    @property
    def done(self) -> bool:
        return self._job is not None and self._job.done

    def finish(self) -> RunSummary:
        result = self._job.result
        warnings = list(result.warnings)
        checked = validation.validate_or_none(self._original, result)
        if checked is not None and checked.verdict != "pass":
            warnings.append(f"{self._name}: {validation.verdict_text(checked)}")
        if self.settings.output_dir is None:
            material = self._packed_material(result)
            warnings.append("The .blend file is not saved yet, so the maps are packed into it; save it to keep "
                            "them, or set an Output Folder in the PBR Forge preferences.")
        else:
            material = build_material(f"{self._name}_PBR", self._write_outputs(result),
                                      height_midlevel=self._manifest.height_midlevel,
                                      pack=self.settings.pack_images, relative=True)
        record_check(material, checked)
        self._place(material)
        self.material = material
        maps = sum(node.type == 'TEX_IMAGE' for node in material.node_tree.nodes)
        return RunSummary(message=f"Made '{material.name}' from {self.label}", count=maps, unit="maps",
                          provider=result.provider, warnings=warnings)

    def _packed_material(self, result) -> bpy.types.Material:
        """The material with its maps packed, written through a temporary folder that is then removed."""
        scratch = Path(tempfile.mkdtemp(prefix="pbr_forge-"))
        try:
            written = write_png_set(result, scratch, self._name, self.settings.png_suffixes())
            material = build_material(f"{self._name}_PBR", written, height_midlevel=self._manifest.height_midlevel,
                                      pack=True)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        for node in material.node_tree.nodes:
            if node.type == 'TEX_IMAGE':
                # Where File > External Data > Unpack puts the file once the .blend is saved.
                node.image.filepath = f"//textures/{Path(node.image.filepath).name}"
        return material

    def cancel(self) -> None:
        if self._job is not None and not self._job.done:
            self._job.cancel()

    def _check_targets_free(self) -> None:
        if self.settings.overwrite:
            return
        for path in self._targets.values():
            if path.exists():
                raise OutputExists(path)

    def _write_outputs(self, result) -> dict[str, Path]:
        out_dir = self.settings.output_dir
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise PBRForgeError(f"Cannot create the output folder '{out_dir}' ({error.strerror}); "
                                "choose another one in the PBR Forge preferences.") from None
        self._check_targets_free()  # files may have appeared while the models ran
        staging = Path(tempfile.mkdtemp(prefix=".pbr_forge-", dir=out_dir))
        try:
            written = write_png_set(result, staging, self._name, self.settings.png_suffixes())
            for role, path in written.items():
                os.replace(path, self._targets[role])
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return {role: self._targets[role] for role in written}


class MaterialConversion(_Conversion):
    """A material's detected diffuse/normal -> a new material in the slots that held the old one."""

    def __init__(self, settings: RunSettings, material: bpy.types.Material,
                 slots: list[tuple[bpy.types.Object, int]]):
        super().__init__(settings, f"'{material.name}'")
        self.source = material
        self.slots = slots

    def _read_inputs(self):
        material = self.source
        if material.pbr_forge_source is not None:
            raise PBRForgeError(f"'{material.name}' was made by PBR Forge from '{material.pbr_forge_source.name}'; "
                                "convert that original instead (Revert to Original puts it back).")
        if material.library is not None or material.override_library is not None:
            raise PBRForgeError(f"The material '{material.name}' is linked from another .blend file; "
                                "make it local (Object > Relations > Make Local) and convert again.")
        for obj, _index in self.slots:
            if obj.library is not None:
                raise PBRForgeError(f"The object '{obj.name}' is linked from another .blend file; "
                                    "make it local before converting its material.")
        found = detect_inputs(material)
        if found.diffuse is None:
            raise PBRForgeError(f"The material '{material.name}' has no diffuse image; connect the diffuse "
                                "texture to the Principled BSDF's Base Color and try again.")
        image_path = image_file_path(found.diffuse)
        if image_path is not None:
            self.settings.refuse_converted_input(image_path)
        diffuse = image_to_array(found.diffuse)
        normal = None
        if found.normal is not None:
            normal = image_to_array(found.normal)
            check_normal_statistics(normal, found.normal.name)
        return diffuse, normal, found.normal_convention, found.base_name or bpy.path.clean_name(material.name)

    def _place(self, material):
        material.pbr_forge_source = self.source
        # Keep the original alive in the .blend even when no slot uses it any more.
        self.source.use_fake_user = True
        for obj, index in self.slots:
            obj.material_slots[index].material = material


class PairConversion(_Conversion):
    """Two image files -> a new material (kept with a fake user; assign it from the material list)."""

    def __init__(self, settings: RunSettings, diffuse_path: Path, normal_path: Path | None):
        super().__init__(settings, f"'{diffuse_path.name}'")
        self.diffuse_path = diffuse_path
        self.normal_path = normal_path

    def _read_inputs(self):
        normal = None
        convention = "auto"
        if self.normal_path is not None:
            normal = read_image(self.normal_path)
            check_normal_statistics(normal, self.normal_path.name)
            convention = naming.normal_convention_of(self.normal_path)
        self.settings.refuse_converted_input(self.diffuse_path)
        base, _suffix = naming.split_suffix(self.diffuse_path.stem)
        return read_image(self.diffuse_path), normal, convention, bpy.path.clean_name(base)

    def _place(self, material):
        material.use_fake_user = True


class ConversionQueue:
    """Several conversions one after another. A conversion that fails with a user error is skipped
    and reported; the finished ones are kept (a later failure never undoes earlier work)."""

    def __init__(self, conversions: list[_Conversion]):
        self.conversions = conversions
        self._index = 0
        self._started = False
        self._summaries: list[RunSummary] = []
        self._failures: list[str] = []

    def start(self) -> None:
        self._start_current()

    @property
    def done(self) -> bool:
        return self._index >= len(self.conversions)

    def step(self) -> float:
        current = self.conversions[self._index]
        try:
            progress = current.step()
            if current.done:
                self._summaries.append(current.finish())
                self._advance()
                return self._index / len(self.conversions)
        except PBRForgeError as error:
            current.cancel()
            self._failures.append(str(error))
            self._advance()
            return self._index / len(self.conversions)
        return (self._index + progress) / len(self.conversions)

    def finish(self) -> RunSummary:
        made = len(self._summaries)
        if made == 1 and not self._failures:
            return self._summaries[0]
        return RunSummary(
            message=f"Converted {made} of {len(self.conversions)} materials",
            count=sum(s.count for s in self._summaries), unit="maps",
            provider=", ".join(dict.fromkeys(s.provider for s in self._summaries)),
            warnings=[w for s in self._summaries for w in s.warnings], failures=self._failures,
        )

    def cancel(self) -> None:
        if not self.done:
            self.conversions[self._index].cancel()

    def _start_current(self) -> None:
        """Start the next conversion now so input errors surface before the first TIMER event."""
        while not self.done and not self._started:
            try:
                self.conversions[self._index].start()
                self._started = True
            except PBRForgeError as error:
                self._failures.append(str(error))
                self._index += 1

    def _advance(self) -> None:
        self._index += 1
        self._started = False
        self._start_current()


def _active_material(context):
    obj = context.object
    return obj.active_material if obj is not None else None


def _active_material_is_converted(operator_class, context) -> bool:
    """poll() of the operators that act on a PBR Forge material (revert, preview)."""
    material = _active_material(context)
    if material is not None and material.pbr_forge_source is not None:
        return True
    operator_class.poll_message_set("The active material was not made by PBR Forge")
    return False


class PBR_FORGE_OT_convert_material(SteppedOperator, bpy.types.Operator):
    """Convert the active material's diffuse and normal into a new PBR material"""
    bl_idname = "pbr_forge.convert_material"
    bl_label = "Convert to PBR"

    @classmethod
    def poll(cls, context):
        material = _active_material(context)
        if material is None:
            cls.poll_message_set("Select an object with a material")
            return False
        if material.pbr_forge_source is not None:
            cls.poll_message_set(f"'{material.name}' was made by PBR Forge; convert its original instead")
            return False
        if detect_inputs(material).diffuse is None:
            cls.poll_message_set("No diffuse image found: connect it to the Principled BSDF's Base Color")
            return False
        return True

    def make_controller(self, context):
        obj = context.object
        conversion = MaterialConversion(RunSettings.from_context(context), obj.active_material,
                                        [(obj, obj.active_material_index)])
        return ConversionQueue([conversion])


class PBR_FORGE_OT_convert_selected(SteppedOperator, bpy.types.Operator):
    """Convert every material of the selected objects into new PBR materials"""
    bl_idname = "pbr_forge.convert_selected"
    bl_label = "Convert Selected Objects"

    @classmethod
    def poll(cls, context):
        if any(slot.material for obj in context.selected_objects for slot in obj.material_slots):
            return True
        cls.poll_message_set("Select objects that have materials")
        return False

    def make_controller(self, context):
        settings = RunSettings.from_context(context)
        slots_by_material: dict[bpy.types.Material, list] = {}
        for obj in context.selected_objects:
            for index, slot in enumerate(obj.material_slots):
                if slot.material is not None:
                    slots_by_material.setdefault(slot.material, []).append((obj, index))
        return ConversionQueue([MaterialConversion(settings, material, slots)
                                for material, slots in slots_by_material.items()])


class PBR_FORGE_OT_convert_pair(SteppedOperator, bpy.types.Operator):
    """Convert a diffuse file (and its normal map) into a new PBR material"""
    bl_idname = "pbr_forge.convert_pair"
    bl_label = "Convert Image Pair"

    diffuse_path: StringProperty(name="Diffuse", subtype='FILE_PATH')
    normal_path: StringProperty(name="Normal", subtype='FILE_PATH')

    @classmethod
    def poll(cls, context):
        # The files may come as operator properties (scripts), so the panel greys the button, not poll.
        return context.scene is not None

    def make_controller(self, context):
        scene_settings = context.scene.pbr_forge
        diffuse = self.diffuse_path or scene_settings.diffuse_path
        normal = self.normal_path or scene_settings.normal_path
        if not diffuse:
            raise PBRForgeError("Choose a diffuse texture file first.")
        diffuse_path = Path(bpy.path.abspath(diffuse))
        normal_path = Path(bpy.path.abspath(normal)) if normal else naming.find_normal_for(diffuse_path)
        return ConversionQueue([PairConversion(RunSettings.from_context(context), diffuse_path, normal_path)])


class PBR_FORGE_OT_revert_material(bpy.types.Operator):
    """Put the original material back in the slots that use this converted one"""
    bl_idname = "pbr_forge.revert_material"
    bl_label = "Revert to Original"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        return _active_material_is_converted(cls, context)

    def execute(self, context):
        converted = context.object.active_material
        source = converted.pbr_forge_source
        for obj in context.scene.objects:
            for slot in obj.material_slots:
                if slot.material == converted and obj.library is None:
                    slot.material = source
        self.report({'INFO'}, f"Restored '{source.name}'; '{converted.name}' stays in the file until it is saved.")
        return {'FINISHED'}


class PBR_FORGE_OT_render_preview(bpy.types.Operator):
    """Render the converted material and its original on a plane (Cycles on the CPU, a second or two)"""
    bl_idname = "pbr_forge.render_preview"
    bl_label = "Render Preview"
    bl_options = {'REGISTER'}

    @classmethod
    def poll(cls, context):
        return _active_material_is_converted(cls, context)

    def execute(self, context):
        from ..blender.preview import render_material_preview

        converted = _active_material(context)
        check = converted.pbr_forge_check
        try:
            check.preview = render_material_preview(converted, f"{converted.name} preview")
            check.source_preview = render_material_preview(converted.pbr_forge_source,
                                                           f"{converted.pbr_forge_source.name} preview")
        except Exception as exc:  # one sentence, never a traceback: the material is untouched
            self.report({'ERROR'}, user_sentence(exc, "render the preview"))
            return {'CANCELLED'}
        redraw_panels(context)
        return {'FINISHED'}


classes = (
    PBR_FORGE_OT_convert_material,
    PBR_FORGE_OT_convert_selected,
    PBR_FORGE_OT_convert_pair,
    PBR_FORGE_OT_revert_material,
    PBR_FORGE_OT_render_preview,
)
