"""Read any texture the add-on accepts into float32 arrays, and write PNG files atomically.

Every caller (the Blender operators, the CLI, the batch runner, the trainer) reads pixels through
`read_image`, so all of them see identical values for the same file.

Array convention: float32, shape (H, W, C) with C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA),
values in [0, 1] exactly as stored (no colour-space conversion), top row first. Float images
(32-bit TIFF) are clipped to [0, 1] but may hold NaN; the pipeline repairs those with a warning.
Images larger than MAX_TEXTURE_SIDE per side are refused from their header, before decoding.

DDS: only the top mip level (first face / array slice) is read. Pillow decodes most block formats;
the DX10 formats it lacks (the sRGB BC1/BC3 variants, typeless BC4, BGRA8) are decoded here with
texture2ddecoder from the header dds.read_header parses. BC5 (two-channel normal maps) comes back as RGB with
blue = 0, as stored; reconstructing Z is the caller's business (see normalmaps.decode_normal). Signed
BC5 (BC5_SNORM, FourCC `BC5S`) is mapped to the same unsigned encoding, (n + 1) / 2, blue = 0.
"""
from __future__ import annotations

import errno
import io
import os
import secrets
import stat
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from . import dds  # the DDS header reader and the DXGI format names
from .errors import ImageReadError

# Largest side read_image accepts (checked from the header, before decoding). An 8K set converts
# within the 4 GB memory budget; a 16K one would need four times that.
MAX_TEXTURE_SIDE = 8192

# DXGI formats decoded here with texture2ddecoder, not Pillow: format -> (texture2ddecoder function
# name, bytes per 4x4 block, channels to keep). Pillow 13 refuses the sRGB ones; it would decode
# BC3_UNORM and BC4_TYPELESS too, but they are read here as well.
_T2D_DXGI = {
    dds.DXGI["BC1_UNORM_SRGB"]: ("decode_bc1", 8, 4),  # what the project's own DDS writer emits for albedo
    dds.DXGI["BC3_UNORM"]: ("decode_bc3", 16, 4),
    dds.DXGI["BC3_UNORM_SRGB"]: ("decode_bc3", 16, 4),
    dds.DXGI["BC4_TYPELESS"]: ("decode_bc4", 8, 1),
}
# Uncompressed BGRA/BGRX DX10 formats -> whether the fourth byte is real alpha.
_BGRA_DXGI = {dds.DXGI[name]: alpha for name, alpha in (
    ("B8G8R8A8_UNORM", True), ("B8G8R8A8_TYPELESS", True), ("B8G8R8A8_UNORM_SRGB", True),
    ("B8G8R8X8_UNORM", False), ("B8G8R8X8_TYPELESS", False), ("B8G8R8X8_UNORM_SRGB", False))}
# Block formats that have no alpha channel: an opaque decoded alpha is dropped.
_OPAQUE_DXGI_BC1 = tuple(dds.DXGI[name] for name in ("BC1_TYPELESS", "BC1_UNORM", "BC1_UNORM_SRGB"))
_DXGI_BC5_SNORM = dds.DXGI["BC5_SNORM"]
_FOURCC_BC5_SNORM = b"BC5S"


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to float32 (H, W, C) in [0, 1], top row first.

    Raises ImageReadError (one sentence) for a missing, unreadable, unsupported, corrupt,
    truncated or too large file.
    """
    return decode_image(read_file_bytes(path), str(path))


def read_file_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of an input file, read once and only for reading (inputs are never modified).

    A pipe, device or folder is refused instead of read: reading a pipe would wait forever.
    """
    path = Path(path)
    try:
        with open(path, "rb", opener=_open_without_waiting) as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                raise ImageReadError(
                    f"Cannot read '{path}': it is not a regular file (a pipe, device or folder); give an image file.")
            return stream.read()
    except FileNotFoundError as exc:
        raise ImageReadError(f"Cannot read '{path}': the file does not exist; check the path.") from exc
    except IsADirectoryError as exc:
        raise ImageReadError(f"Cannot read '{path}': it is a folder, not an image file; check the path.") from exc
    except OSError as exc:
        raise ImageReadError(
            f"Cannot read '{path}': {exc.strerror or exc}; check the file's permissions."
        ) from exc


def _open_without_waiting(path, flags):
    """Opening a pipe for reading blocks until a writer appears; O_NONBLOCK returns at once (POSIX)."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def decode_image(data: bytes, name: str) -> np.ndarray:
    """`read_image` for bytes already in memory (e.g. images embedded in parquet); `name` labels errors."""
    try:
        if data[:4] == dds.MAGIC:
            array = _read_dds(data)
        else:
            array = _read_with_pillow(data)
    except ImageReadError as exc:
        raise ImageReadError(f"Cannot read '{name}': {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageReadError(
            f"Cannot read '{name}': it is not a PNG, TGA, JPG, BMP, TIFF or DDS image (or it is corrupt); "
            "re-export it in one of those formats."
        ) from exc
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"Cannot read '{name}': {_too_large('it has more pixels than Pillow opens')}") from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error,
            NotImplementedError) as exc:
        reason = str(exc).rstrip(".") or type(exc).__name__
        raise ImageReadError(
            f"Cannot read '{name}': the file is corrupt, truncated or in an unsupported format "
            f"({reason}); re-export it as PNG, TGA or DDS."
        ) from exc
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageReadError(f"Cannot read '{name}': the image is empty; re-export it.")
    return array


def _check_size(width: int, height: int) -> None:
    """Refuse, from the header alone, an image too large to convert: decoding a 13000x13000 PNG
    (a 164 KB file) takes gigabytes before anything could fail."""
    if max(width, height) > MAX_TEXTURE_SIDE:
        raise ImageReadError(_too_large(f"it is {width}x{height} pixels"))


def _too_large(what: str) -> str:
    return (f"{what}, and PBR Forge converts textures up to {MAX_TEXTURE_SIDE} pixels per side; resize it "
            f"(e.g. `texconv -w {MAX_TEXTURE_SIDE} -h {MAX_TEXTURE_SIDE}`, GIMP or Paint.NET) and convert the "
            "smaller copy.")


def _read_with_pillow(data: bytes) -> np.ndarray:
    with warnings.catch_warnings():  # sizes Pillow warns about are refused below with a sentence
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data))  # reads the header only
    _check_size(*image.size)
    if image.format == "PNG" and _is_16bit_colour_png(image):
        return _read_16bit_colour_png(data)
    image.load()  # decode now so truncation is reported here
    return _pillow_to_array(image)


def _pillow_to_array(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return (np.asarray(image, dtype=np.uint16).astype(np.float32) / 65535.0)[..., None]
    if mode == "I":  # 16-bit data some plug-ins widen to int32 (e.g. TIFF)
        values = np.asarray(image, dtype=np.int64)
        scale = 65535.0 if values.max(initial=0) > 255 else 255.0
        return np.clip(values / scale, 0.0, 1.0).astype(np.float32)[..., None]
    if mode == "F":
        return np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)[..., None]
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    elif mode == "1":
        image = image.convert("L")
    elif mode not in ("L", "LA", "RGB", "RGBA"):  # CMYK, YCbCr, La, RGBa, ...
        image = image.convert("RGBA" if "A" in mode or "a" in mode else "RGB")
    array = np.asarray(image, dtype=np.uint8).astype(np.float32) / 255.0
    return array if array.ndim == 3 else array[..., None]


# --- 16-bit colour PNG ------------------------------------------------------------------------
# Pillow keeps only the high byte of 16-bit RGB/RGBA/LA PNGs. Its decoder still does the zlib and
# filter work; decoding twice with the high-byte and the low-byte unpacker recovers all 16 bits.

_COLOUR_16BIT_RAWMODES = ("RGB;16B", "RGBA;16B", "LA;16B")


def _is_16bit_colour_png(image: Image.Image) -> bool:
    return bool(image.tile) and _tile_rawmode(image.tile[0]) in _COLOUR_16BIT_RAWMODES


def _tile_rawmode(tile):
    return tile.args if isinstance(tile.args, str) else tile.args[0]


def _decode_with_rawmode(data: bytes, rawmode: str) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    tile = image.tile[0]
    args = rawmode if isinstance(tile.args, str) else (rawmode, *tile.args[1:])
    image.tile = [tile._replace(args=args)]
    image.load()
    return np.asarray(image, dtype=np.uint8)


def _read_16bit_colour_png(data: bytes) -> np.ndarray:
    high_rawmode = _tile_rawmode(Image.open(io.BytesIO(data)).tile[0])
    if high_rawmode == "LA;16B":
        # No low-byte LA unpacker exists; a 16-bit LA pixel has the byte size of an 8-bit RGBA
        # pixel, so the RGBA unpacker returns the unfiltered bytes (L high, L low, A high, A low).
        raw = _decode_with_rawmode(data, "RGBA").astype(np.uint16)
        values = raw[..., [0, 2]] * 256 + raw[..., [1, 3]]
    else:
        high = _decode_with_rawmode(data, high_rawmode)
        low = _decode_with_rawmode(data, high_rawmode[:-1] + "L")  # ';16L' reads the other byte
        values = high.astype(np.uint16) * 256 + low
    return values.astype(np.float32) / 65535.0


# --- DDS ----------------------------------------------------------------------------------------

def _read_dds(data: bytes) -> np.ndarray:
    header = dds.read_header(data)
    width, height, fourcc, dxgi, offset = header.width, header.height, header.fourcc, header.dxgi, header.data_offset
    _check_size(width, height)
    if dxgi in _T2D_DXGI:
        return _decode_block_dds(data, offset, width, height, *_T2D_DXGI[dxgi])
    if dxgi in _BGRA_DXGI:
        return _decode_bgra_dds(data, offset, width, height, has_alpha=_BGRA_DXGI[dxgi])
    image = Image.open(io.BytesIO(data))
    image.load()
    array = _pillow_to_array(image)
    if dxgi == _DXGI_BC5_SNORM or (dxgi is None and fourcc == _FOURCC_BC5_SNORM):
        return _unsigned_from_pillow_snorm(array)
    is_bc1 = fourcc == b"DXT1" or dxgi in _OPAQUE_DXGI_BC1
    return _drop_opaque_alpha(array) if is_bc1 else array


def _unsigned_from_pillow_snorm(array: np.ndarray) -> np.ndarray:
    """Pillow decodes signed BC5 as (v + 128) / 255 for each signed byte v in red and green, and
    fills blue with 128 (a signed 0). Returns the unsigned encoding of the same vector,
    (v / 127 + 1) / 2 (-128 counts as -127, as in Direct3D), with blue = 0 like unsigned BC5, so
    the normal decoder rebuilds Z instead of reading 0.5 as a Z of 0."""
    signed = np.rint(array[..., :2] * 255.0) - 128.0
    xy = np.maximum(signed, -127.0) / 127.0
    rgb = np.zeros(array.shape[:2] + (3,), dtype=np.float32)
    rgb[..., :2] = (xy + 1.0) * 0.5
    return rgb


def _drop_opaque_alpha(array: np.ndarray) -> np.ndarray:
    """BC1 has no alpha channel (only 1-bit punch-through): keep alpha only when it is used."""
    if array.shape[2] == 4 and array[..., 3].min() >= 1.0:
        return array[..., :3]
    return array


def _decode_block_dds(data, offset, width, height, decoder_name, block_bytes, channels):
    import texture2ddecoder  # imported here: only the rare formats Pillow lacks need it

    size = ((width + 3) // 4) * ((height + 3) // 4) * block_bytes
    payload = data[offset:offset + size]
    if len(payload) < size:
        raise ImageReadError("the DDS pixel data is truncated; re-export the texture.")
    bgra = getattr(texture2ddecoder, decoder_name)(payload, width, height)
    pixels = np.frombuffer(bgra, dtype=np.uint8).reshape(height, width, 4)
    rgba = pixels[..., [2, 1, 0, 3]]  # texture2ddecoder returns BGRA
    if channels == 1:
        rgba = rgba[..., :1]
    array = rgba.astype(np.float32) / 255.0
    return _drop_opaque_alpha(array) if decoder_name == "decode_bc1" else array


def _decode_bgra_dds(data, offset, width, height, *, has_alpha):
    size = width * height * 4
    payload = data[offset:offset + size]
    if len(payload) < size:
        raise ImageReadError("the DDS pixel data is truncated; re-export the texture.")
    pixels = np.frombuffer(payload, dtype=np.uint8).reshape(height, width, 4)
    rgba = pixels[..., [2, 1, 0, 3] if has_alpha else [2, 1, 0]]
    return rgba.astype(np.float32) / 255.0


# --- writing ------------------------------------------------------------------------------------

def write_png(path: str | os.PathLike, array: np.ndarray, bits: int = 8) -> Path:
    """Write (H, W) or (H, W, C) values in [0, 1] (clipped) as an 8- or 16-bit PNG.

    The file appears atomically: it is written to a temporary file beside the target and renamed,
    so a crash never leaves a half-written PNG under the final name. Returns the path.
    """
    return write_atomically(Path(path), encode_png(array, bits))


def encode_png(array: np.ndarray, bits: int = 8) -> bytes:
    """(H, W) or (H, W, 1..4) values in [0, 1] (clipped) -> the bytes of an 8- or 16-bit PNG."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, not {bits}")
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (2, 3, 4)):
        raise ValueError(f"expected (H, W) or (H, W, 1..4) pixels, got shape {array.shape}")
    values = _quantise(array, bits)
    return _encode_png_8(values) if bits == 8 else _encode_png_16(values)


def _quantise(array: np.ndarray, bits: int, rows_per_block: int = 256) -> np.ndarray:
    """[0, 1] floats -> uint8/uint16, a block of rows at a time so an 8K map needs no float copy."""
    top = 255 if bits == 8 else 65535
    values = np.empty(array.shape, dtype=np.uint8 if bits == 8 else np.uint16)
    for start in range(0, array.shape[0], rows_per_block):
        block = np.clip(array[start:start + rows_per_block].astype(np.float32), 0.0, 1.0)
        block *= top
        values[start:start + rows_per_block] = np.rint(block, out=block)
    return values


def _encode_png_8(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _encode_png_16(values: np.ndarray) -> bytes:
    """16-bit PNG encoder (Pillow writes 16 bits only for grey). Every row uses the Up filter,
    which suits smooth data such as height maps and vectorises in numpy."""
    height, width = values.shape[:2]
    channels = 1 if values.ndim == 2 else values.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = values.astype(">u2").reshape(height, width * channels).view(np.uint8)
    filtered = rows.copy()
    filtered[1:] -= rows[:-1]  # uint8 arithmetic wraps modulo 256, as PNG's filter requires
    scanlines = np.empty((height, 1 + rows.shape[1]), dtype=np.uint8)
    scanlines[:, 0] = 2  # filter type Up
    scanlines[:, 1:] = filtered

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 6)) + chunk(b"IEND", b""))


# Temporary files of write_atomically: `.pbr_forge.XXXXXXXX.tmp` (a killed run leaves them behind).
TEMPORARY_PREFIX = ".pbr_forge."
TEMPORARY_SUFFIX = ".tmp"
_TEMPORARY_ATTEMPTS = 100
# Exclusive creation, never through a link; O_BINARY: no newline translation on Windows.
_TEMPORARY_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL
                    | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))


def create_temporary(folder: Path) -> tuple[int, str]:
    """(descriptor, path) of a new, empty temporary file in `folder`, like tempfile.mkstemp but with
    the permissions of any new file (0o666 less the umask, applied by the OS): mkstemp's are the
    owner's only. The umask is never read, since reading it means setting it, and another thread
    (Blender runs several) creating a file meanwhile would get the wrong permissions."""
    for _ in range(_TEMPORARY_ATTEMPTS):
        path = os.path.join(folder, f"{TEMPORARY_PREFIX}{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")
        try:
            return os.open(path, _TEMPORARY_FLAGS, 0o666), path
        except FileExistsError:
            continue
        except OSError as exc:  # e.g. a read-only folder: name the folder, not the temporary file
            raise type(exc)(exc.errno, exc.strerror, str(folder)) from exc
    raise FileExistsError(errno.EEXIST, "No usable temporary file name found", str(folder))


def write_atomically(path: Path, payload: bytes) -> Path:
    """Write `payload` to a temporary file beside `path`, fsync it, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A short fixed prefix, not the target's name: a legal 255-byte name must not fail here.
    handle, temporary = create_temporary(path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        if os.path.exists(temporary):
            os.unlink(temporary)
        if isinstance(exc, OSError) and exc.errno is not None:
            # Name the file the user knows, not the temporary one.
            raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
        raise
    return path


__all__ = ["read_image", "read_file_bytes", "decode_image", "write_png", "encode_png", "write_atomically",
           "MAX_TEXTURE_SIDE"]
