"""Image processing: upload validation and derivative generation.

Pure functions over bytes: no Flask, Celery, storage or database here, so
the API (inspect_upload, in the request path) and the workers
(make_derivatives) share the exact same rules, and tests need nothing else.

Speed matters because both run for every photo:
  * the type is sniffed from magic bytes, then Pillow reads only the header
    to check the pixel count BEFORE anything is decoded;
  * a JPEG is decoded once, at a reduced size chosen by libjpeg's DCT
    scaling (draft mode), so a 12 MP photo is never fully decoded;
  * derivatives are made in a cascade (1080 -> 640 -> 320 -> 150), each
    from the previous one, so every resize step is small (the 640 comes
    from the decoded base instead when the 1080 had to be stretched).
Measured by bench/pipeline.py: ~35 ms CPU for a 12 MP JPEG, 15x less than
decoding in full and resizing each derivative with LANCZOS.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import pillow_heif
from blurhash._functions import ffi as _blurhash_ffi
from blurhash._functions import lib as _blurhash_lib
from PIL import Image, ImageCms

# HEIC/HEIF support comes from pillow_heif, as a Pillow plugin ("HEIF").
pillow_heif.register_heif_opener()

# Derivative name -> target width. The thumbnail is a square crop.
WIDTHS = {"high_resolution": 1080, "standard_resolution": 640, "low_resolution": 320}
THUMBNAIL = "thumbnail"
THUMBNAIL_SIZE = 150
DERIVATIVE_NAMES = (*WIDTHS, THUMBNAIL)  # every derivative make_derivatives produces
JPEG_QUALITY = 85
BLURHASH_WIDTH = 32
BLURHASH_COMPONENTS = (4, 3)

# Resampling filter: BOX, i.e. exact area averaging (what OpenCV calls
# INTER_AREA), the classic downscaling filter: no ringing, and the cheapest
# antialiased one. libjpeg's DCT scaling (or Image.reduce for the other
# formats) already does the bulk of a 4032 -> 1080 reduction, so each step
# left is a factor < 2; there, once the result is JPEG-compressed at q85,
# the derivatives end within ~1 dB PSNR of a full-size Lanczos reference
# (q85 itself costs ~40 dB), while the base -> 1080 step, the one expensive
# resize, is ~1.5x cheaper than HAMMING and ~3x cheaper than LANCZOS.
RESAMPLE = Image.Resampling.BOX
# resize(reducing_gap=1.0) first shrinks by the integer part of the factor
# with Image.reduce (a box average too, but much faster than the generic
# resampler), then area-averages the fractional rest: exactly 2x
# (640 -> 320) is then nearly free, and a non-JPEG 4032 -> 1080 goes
# through reduce(3).
REDUCING_GAP = 1.0
# libjpeg scales by 1/2, 1/4 or 1/8 only. For the usual 4032- and 4000-wide
# phone photos, 1/4 gives 1008/1000 px, 7% short of 1080, whereas 1/2
# gives 2016: 4x the pixels to decode and resample. Decoding at 1/4 and
# stretching by <= 8% with BICUBIC measured as good as 1/2 + BOX (PSNR
# against a full-size Lanczos reference, after JPEG q85: equal or +0.4 dB)
# for ~4 ms (10%) less CPU per photo.
UPSCALE_SLACK = 1.08

# EXIF orientation -> transpose making the image upright; the same table as
# ImageOps.exif_transpose (which we avoid because it also rewrites the EXIF
# we are about to discard). 5-8 swap width and height.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = {5, 6, 7, 8}
_ORIENTATION_TAG = 0x0112

# Sniffed format -> (Pillow plugin id, content type, extension).
_FORMATS = {
    "jpeg": ("JPEG", "image/jpeg", "jpg"),
    "png": ("PNG", "image/png", "png"),
    "webp": ("WEBP", "image/webp", "webp"),
    "heif": ("HEIF", "image/heif", "heif"),
}
# ISO-BMFF brands of HEVC-coded HEIF, i.e. what phones call HEIC.
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_HEIF_BRANDS = {b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}


class ImageRejected(ValueError):
    """An upload we refuse; the API maps it to a 4xx JSON error."""

    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type
        self.message = message


@dataclass
class ImageInfo:
    format: str  # 'jpeg' | 'png' | 'webp' | 'heif'
    width: int  # upright (EXIF orientation applied)
    height: int
    content_type: str
    extension: str


@dataclass
class Derivative:
    name: str
    data: bytes
    width: int
    height: int
    content_type: str


@dataclass
class DerivativeSet:
    derivatives: dict[str, Derivative]
    blurhash: str
    width: int  # upright original size
    height: int


def _invalid(message: str) -> ImageRejected:
    return ImageRejected("APIInvalidImage", message)


def _sniff(data: bytes) -> tuple[str, str, str]:
    """(format, content_type, extension) from magic numbers, never from a
    filename or a client's Content-Type."""
    if not data:
        raise _invalid("The upload is empty.")
    if data[:3] == b"\xff\xd8\xff":
        return ("jpeg",) + _FORMATS["jpeg"][1:]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ("png",) + _FORMATS["png"][1:]
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        # The RIFF header carries the payload size: a cheap, exact
        # truncation check (a full WebP decode is too slow for a request).
        if int.from_bytes(data[4:8], "little") + 8 > len(data):
            raise _invalid("The WebP image is truncated.")
        return ("webp",) + _FORMATS["webp"][1:]
    if data[4:8] == b"ftyp":
        # ISO-BMFF: major brand + compatible brands tell HEIC from AVIF/MP4.
        box_end = min(int.from_bytes(data[0:4], "big"), len(data))
        brands = {data[8:12]} | {data[i:i + 4] for i in range(16, box_end - 3, 4)}
        heic = bool(brands & _HEIC_BRANDS)
        if heic or (brands & _HEIF_BRANDS and not brands & _AVIF_BRANDS):
            if not _boxes_complete(data):
                raise _invalid("The HEIF image is truncated.")
            return ("heif", "image/heic", "heic") if heic else ("heif",) + _FORMATS["heif"][1:]
    raise ImageRejected(
        "APIUnsupportedMediaType",
        "Unsupported image type; upload a JPEG, PNG, WebP or HEIC image.",
    )


def _boxes_complete(data: bytes) -> bool:
    """Whether the top-level ISO-BMFF boxes (ftyp, meta, mdat...) exactly
    tile the file: a cheap, exact truncation check for HEIF, whose full
    decode is too slow for a request (libheif only notices some truncations
    when it decodes)."""
    offset = 0
    while offset < len(data):
        if offset + 8 > len(data):
            return False
        size = int.from_bytes(data[offset:offset + 4], "big")
        if size == 0:  # "extends to the end of the file"
            return True
        if size == 1:  # 64-bit size after the type
            if offset + 16 > len(data):
                return False
            size = int.from_bytes(data[offset + 8:offset + 16], "big")
        if size < 8:
            return False
        offset += size
    return offset == len(data)


def _open(data: bytes, fmt: str) -> Image.Image:
    """Open (header only) with the plugin matching the sniffed type."""
    try:
        return Image.open(io.BytesIO(data), formats=[_FORMATS[fmt][0]])
    except Image.DecompressionBombError as exc:
        # Pillow refuses > 2 * Image.MAX_IMAGE_PIXELS (~179 MP) at open time
        # (between 1x and 2x it only emits DecompressionBombWarning, which
        # we leave alone: our own max_pixels check, from the header, decides).
        raise ImageRejected("APIImageTooLarge", "The image has too many pixels.") from exc
    except Exception as exc:  # UnidentifiedImageError, OSError, ValueError...
        raise _invalid("The image is corrupt or not a valid %s file." % fmt.upper()) from exc


def _orientation(exif_bytes: bytes | None) -> int:
    """EXIF orientation (1-8) from raw EXIF bytes; a broken block counts as
    1 (upright), as browsers do."""
    if not exif_bytes:
        return 1
    try:
        exif = Image.Exif()
        exif.load(exif_bytes)
        return int(exif.get(_ORIENTATION_TAG, 1))
    except Exception:
        return 1


def _loaded_orientation(img: Image.Image) -> int:
    """Orientation from a loaded image: getexif() also sees a PNG eXIf chunk
    that follows the pixel data, and an XMP-only orientation."""
    try:
        return int(img.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:
        return 1


def _upright(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """Displayed size of a stored size once the orientation is applied."""
    return (size[1], size[0]) if orientation in _SWAPS_AXES else size


def inspect_upload(data: bytes, max_pixels: int) -> ImageInfo:
    """Validate an upload cheaply; raise ImageRejected if we won't take it."""
    fmt, content_type, extension = _sniff(data)
    img = _open(data, fmt)
    with img:
        # Header-only: img.getexif() would decode a whole PNG to look for an
        # eXIf chunk after the pixel data (such a rare late orientation is
        # still honoured by make_derivatives, not in these dimensions).
        width, height = _upright(img.size, _orientation(img.info.get("exif")))
        # Decompression bombs: decide from the header, before decoding.
        if width * height > max_pixels:
            raise ImageRejected(
                "APIImageTooLarge",
                "The image is %dx%d; at most %d pixels are accepted."
                % (width, height, max_pixels),
            )
        try:
            if fmt == "jpeg":
                # JPEG has no checksum and verify() does nothing for it, so
                # decode at 1/8 scale: every entropy-coded byte is still read
                # (a truncated or corrupt scan fails) but the IDCT and colour
                # work shrink 64x (~7 ms for 12 MP). Relies on Pillow's
                # default ImageFile.LOAD_TRUNCATED_IMAGES = False.
                img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
                img.load()
            elif fmt == "png":
                # verify() walks every chunk to IEND checking CRCs, without
                # inflating: catches truncation and corruption cheaply.
                img.verify()
            # WebP and HEIF: _sniff checked the RIFF size / the top-level
            # boxes against the data length, and Pillow's WebP demuxer and
            # libheif parsed the container at open. A corrupt-but-complete
            # bitstream of either is caught by make_derivatives in the worker
            # (a full decode costs 150-350 ms, too slow for the request).
        except Exception as exc:
            raise _invalid("The image is truncated or corrupt.") from exc
    return ImageInfo(fmt, width, height, content_type, extension)


def _fit_width(width: int, height: int, target: int) -> tuple[int, int]:
    """Size at `target` width, keeping aspect ratio; never upscales."""
    if width <= target:
        return width, height
    return target, max(1, round(height * target / width))


def _flatten(img: Image.Image) -> Image.Image:
    """Reduce any mode to RGB, L or CMYK (the modes that resize cleanly and
    that ICC conversion understands); alpha is flattened onto white."""
    if img.mode in ("RGB", "L", "CMYK"):
        return img
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode.startswith("I") or img.mode == "F":
        # 16-bit/32-bit greyscale: convert() would clip at 255, so scale.
        return img.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    return img.convert("RGB")  # P, 1, YCbCr, LAB, HSV...


def _to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """RGB in sRGB. An embedded profile (Display P3 on phones, Adobe RGB,
    CMYK...) is converted to sRGB so no profile needs to ship with the
    derivatives; a broken or mismatched profile is ignored. The transform
    costs ~15 ms on a 1008x756 base, so an RGB image already tagged sRGB
    (most Android and camera JPEGs) skips it."""
    if icc:
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if not (img.mode == "RGB" and "srgb" in ImageCms.getProfileDescription(profile).lower()):
                return ImageCms.profileToProfile(
                    img, profile, ImageCms.createProfile("sRGB"), outputMode="RGB"
                )
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            pass
    return img if img.mode == "RGB" else img.convert("RGB")


def _encode(name: str, img: Image.Image) -> Derivative:
    # Every derivative descends from an image whose info was emptied, and
    # nothing is passed here: no EXIF, GPS, XMP, comment or ICC profile is
    # written. Baseline (not progressive) and optimize=False: both cost
    # encode time (progressive ~4x) for a few % of bytes.
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False)
    return Derivative(name, buf.getvalue(), img.width, img.height, "image/jpeg")


def _blurhash(img: Image.Image) -> str:
    """BlurHash with 4x3 components of a ~32 px wide version of img (RGB).

    blurhash.encode() reads pixels through Image.getdata(), deprecated in
    Pillow 13 and removed in 14, so we call the same C encoder that it wraps
    with the raw RGB bytes.
    """
    small = img.resize(_fit_width(img.width, img.height, BLURHASH_WIDTH), Image.Resampling.BOX)
    pixels = _blurhash_ffi.from_buffer("uint8_t[]", small.tobytes())
    out = _blurhash_ffi.new("char[]", 2 + 4 + (9 * 9 - 1) * 2 + 1)
    result = _blurhash_lib.create_hash_from_pixels(
        BLURHASH_COMPONENTS[0], BLURHASH_COMPONENTS[1],
        small.width, small.height, pixels, small.width * 3, out,
    )
    if result == _blurhash_ffi.NULL:
        raise ValueError("blurhash encoding failed")
    return _blurhash_ffi.string(result).decode("ascii")


def _thumbnail(sources: list[Image.Image]) -> Image.Image:
    """150x150 centre-square crop from the smallest source whose short side
    is big enough (the last one is the fallback, for extreme panoramas).
    Never upscales: a source whose short side is under 150 gives a smaller
    square."""
    for img in sources:
        if min(img.size) >= THUMBNAIL_SIZE:
            break
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    square = img.crop((left, top, left + side, top + side))
    size = min(side, THUMBNAIL_SIZE)
    return square.resize((size, size), RESAMPLE, reducing_gap=REDUCING_GAP)


def make_derivatives(data: bytes) -> DerivativeSet:
    """Decode once and produce the four JPEG derivatives and a BlurHash."""
    fmt = _sniff(data)[0]
    img = _open(data, fmt)
    stored_size = img.size
    try:
        width, height = _upright(stored_size, _orientation(img.info.get("exif")))
        # Scale needed by the largest output: 1080 wide (less UPSCALE_SLACK)
        # and a short side of 150 for the thumbnail (which matters only for
        # extreme panoramas).
        scale = min(1.0, max(WIDTHS["high_resolution"] / width / UPSCALE_SLACK,
                             THUMBNAIL_SIZE / min(width, height)))
        # draft() works on the stored (un-rotated) size, so the scale found
        # on the upright size is applied to img.size. libjpeg then decodes
        # at the smallest DCT reduction (1/2, 1/4, 1/8) still >= that size:
        # 4032x3024 -> 1008x756. A no-op for the other formats, which are
        # reduced after decoding instead.
        img.draft("RGB", (max(1, int(img.width * scale)), max(1, int(img.height * scale))))
        img.load()
        # Authoritative orientation now that everything is read (a PNG may
        # carry eXIf after its pixel data; XMP orientation counts too).
        orientation = _loaded_orientation(img)
        width, height = _upright(stored_size, orientation)
        if orientation in _TRANSPOSE:
            # Applied to the reduced image, so it is cheap.
            img = img.transpose(_TRANSPOSE[orientation])
        # sRGB on the reduced base: every derivative descends from it.
        base = _to_srgb(_flatten(img), img.info.get("icc_profile"))
    except Exception as exc:  # truncated/corrupt data that got past inspect
        raise _invalid("The image could not be decoded.") from exc
    # Drop every piece of metadata carried in .info (EXIF, XMP, comments,
    # ICC); resize/convert copy .info, and the JPEG writer reuses a comment.
    base.info = {}

    high_size = _fit_width(width, height, WIDTHS["high_resolution"])
    if base.width < high_size[0]:
        # The DCT-scaled decode came out up to UPSCALE_SLACK short (1008
        # for 1080): stretch it, with a filter that interpolates.
        high = base.resize(high_size, Image.Resampling.BICUBIC)
        source = base  # never resample an upscaled image further
    else:
        high = source = base.resize(high_size, RESAMPLE, reducing_gap=REDUCING_GAP)
    # The cascade: each derivative from the previous one.
    standard = source.resize(_fit_width(width, height, WIDTHS["standard_resolution"]), RESAMPLE,
                             reducing_gap=REDUCING_GAP)
    low = standard.resize(_fit_width(width, height, WIDTHS["low_resolution"]), RESAMPLE,
                          reducing_gap=REDUCING_GAP)
    thumb = _thumbnail([low, standard, source, base])

    images = {"high_resolution": high, "standard_resolution": standard,
              "low_resolution": low, THUMBNAIL: thumb}
    return DerivativeSet(
        derivatives={name: _encode(name, im) for name, im in images.items()},
        blurhash=_blurhash(low),
        width=width,
        height=height,
    )
