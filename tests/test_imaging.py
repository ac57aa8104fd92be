"""app/media/imaging.py: upload validation and derivatives.

Pure-function tests: every image is made here, in memory, with Pillow (and
pillow_heif for HEIC); no Flask app, database or photo files are used.
"""
from __future__ import annotations

import io
import struct
import zlib

import blurhash
import pillow_heif
import pytest
from PIL import ExifTags, Image, ImageCms, ImageOps, ImageStat

from app.media.imaging import (
    THUMBNAIL,
    DerivativeSet,
    ImageInfo,
    ImageRejected,
    inspect_upload,
    make_derivatives,
)

pillow_heif.register_heif_opener()  # so that the tests can *save* HEIC

MAX_PIXELS = 50_000_000
RED = (230, 20, 20)
BLUE = (20, 40, 220)
MAKE, MODEL = "ShutterCam", "Model-X-Secret"
COMMENT = b"comment-secret-marker"
XMP_MARKER = b"xmp-secret-marker"
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:title="' + XMP_MARKER + b'"/>'
    b"</rdf:RDF></x:xmpmeta>"
)
# Everything that must never reach a served file.
SECRETS = [MAKE.encode(), MODEL.encode(), COMMENT, XMP_MARKER, b"GPS", b"Exif", b"http://ns.adobe.com/xap"]
DERIVATIVES = {"high_resolution", "standard_resolution", "low_resolution", THUMBNAIL}


# -- images ---------------------------------------------------------------

def picture(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A gradient with some structure, so the codecs have work to do."""
    gradient = Image.linear_gradient("L").resize((width, height))
    img = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_180), gradient))
    img.paste(RED, (width // 4, height // 4, width // 2, height // 2))
    return img.convert(mode) if mode != "RGB" else img


def phone_exif(orientation: int = 1) -> Image.Exif:
    """Camera make/model, orientation and a GPS IFD, as a phone writes."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = MAKE
    exif[ExifTags.Base.Model] = MODEL
    exif[ExifTags.Base.Orientation] = orientation
    exif.get_ifd(ExifTags.IFD.GPSInfo).update(
        {
            ExifTags.GPS.GPSLatitudeRef: "N",
            ExifTags.GPS.GPSLatitude: (48.0, 51.0, 29.0),
            ExifTags.GPS.GPSLongitudeRef: "E",
            ExifTags.GPS.GPSLongitude: (2.0, 17.0, 40.0),
        }
    )
    return exif


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    if fmt in ("JPEG", "WEBP", "HEIF"):
        kwargs.setdefault("quality", 90)
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def with_metadata(img: Image.Image, fmt: str, orientation: int = 1) -> bytes:
    """img encoded with EXIF (camera + GPS), XMP, a comment and an ICC
    profile, where the format can carry them."""
    kwargs = {"exif": phone_exif(orientation).tobytes()}
    if fmt in ("JPEG", "PNG", "WEBP"):
        kwargs["xmp"] = XMP
        kwargs["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    if fmt == "JPEG":
        kwargs["comment"] = COMMENT
    return encode(img, fmt, **kwargs)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header announcing width x height, with a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))


def jpeg_bomb(width: int = 65_000, height: int = 65_000) -> bytes:
    """A real tiny JPEG whose SOF0 header is patched to claim a huge size."""
    data = bytearray(encode(picture(16, 16), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def decode(derivative) -> Image.Image:
    img = Image.open(io.BytesIO(derivative.data))
    img.load()
    return img


def near(pixel, color, tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, color))


def check_set(result: DerivativeSet, width: int, height: int, expected: dict[str, tuple[int, int]]):
    """Sizes as expected, each one a real RGB JPEG of its declared size."""
    assert isinstance(result, DerivativeSet)
    assert (result.width, result.height) == (width, height)
    assert set(result.derivatives) == DERIVATIVES
    for name, derivative in result.derivatives.items():
        assert derivative.name == name
        assert derivative.content_type == "image/jpeg"
        img = decode(derivative)
        assert img.format == "JPEG" and img.mode == "RGB"
        assert img.size == (derivative.width, derivative.height) == expected[name], name


LANDSCAPE_1600 = {
    "high_resolution": (1080, 810),
    "standard_resolution": (640, 480),
    "low_resolution": (320, 240),
    THUMBNAIL: (150, 150),
}


# -- accepted formats -------------------------------------------------------

ACCEPTED = {
    "jpeg": (lambda: encode(picture(1600, 1200), "JPEG"), ("jpeg", "image/jpeg", "jpg")),
    "jpeg-grey": (lambda: encode(picture(1600, 1200, "L"), "JPEG"), ("jpeg", "image/jpeg", "jpg")),
    "jpeg-cmyk": (lambda: encode(picture(1600, 1200, "CMYK"), "JPEG"), ("jpeg", "image/jpeg", "jpg")),
    "jpeg-progressive": (lambda: encode(picture(1600, 1200), "JPEG", progressive=True),
                         ("jpeg", "image/jpeg", "jpg")),
    "png": (lambda: encode(picture(1600, 1200), "PNG"), ("png", "image/png", "png")),
    "png-rgba": (lambda: encode(picture(1600, 1200, "RGBA"), "PNG"), ("png", "image/png", "png")),
    "png-palette": (lambda: encode(picture(1600, 1200, "P"), "PNG"), ("png", "image/png", "png")),
    "png-la": (lambda: encode(picture(1600, 1200, "LA"), "PNG"), ("png", "image/png", "png")),
    "png-16bit": (lambda: encode(picture(1600, 1200, "L").convert("I").point(lambda v: v * 256)
                                 .convert("I;16"), "PNG"), ("png", "image/png", "png")),
    "webp": (lambda: encode(picture(1600, 1200), "WEBP"), ("webp", "image/webp", "webp")),
    "webp-rgba": (lambda: encode(picture(1600, 1200, "RGBA"), "WEBP"), ("webp", "image/webp", "webp")),
    "heic": (lambda: encode(picture(1600, 1200), "HEIF"), ("heif", "image/heic", "heic")),
}


@pytest.mark.parametrize("kind", ACCEPTED)
def test_accepted_format_yields_four_derivatives(kind):
    make, (fmt, content_type, extension) = ACCEPTED[kind]
    data = make()
    assert inspect_upload(data, MAX_PIXELS) == ImageInfo(fmt, 1600, 1200, content_type, extension)
    result = make_derivatives(data)
    check_set(result, 1600, 1200, LANDSCAPE_1600)
    assert isinstance(result.blurhash, str) and result.blurhash


def test_phone_sized_jpeg_is_decoded_reduced_but_sized_exactly():
    # 4032 wide: libjpeg decodes at 1/4 (1008), stretched to 1080.
    data = encode(picture(4032, 3024), "JPEG")
    check_set(make_derivatives(data), 4032, 3024, LANDSCAPE_1600)


def test_type_comes_from_the_bytes_not_a_name():
    png = encode(picture(64, 64), "PNG")
    assert inspect_upload(png, MAX_PIXELS).format == "png"
    jpeg = encode(picture(64, 64), "JPEG")
    assert inspect_upload(jpeg, MAX_PIXELS).content_type == "image/jpeg"


def test_transparency_is_flattened_on_white():
    img = Image.new("RGBA", (400, 400), (0, 0, 0, 0))  # transparent black
    img.paste((*RED, 255), (0, 0, 200, 400))
    result = make_derivatives(encode(img, "PNG"))
    high = decode(result.derivatives["high_resolution"])
    assert near(high.getpixel((50, 200)), RED)
    assert near(high.getpixel((350, 200)), (255, 255, 255), tolerance=8)


def test_16bit_grey_is_scaled_not_clipped():
    img = Image.new("I;16", (400, 300), 32768)  # mid grey in 16 bits
    result = make_derivatives(encode(img, "PNG"))
    r, g, b = decode(result.derivatives["standard_resolution"]).getpixel((200, 150))
    assert abs(r - 128) <= 4 and r == g == b


# -- orientation -------------------------------------------------------------

# Where a marker in the stored top-left corner shows once the EXIF
# orientation is applied (ImageOps.exif_transpose semantics).
MARKER_CORNER = {1: "top-left", 2: "top-right", 3: "bottom-right", 4: "bottom-left",
                 5: "top-left", 6: "top-right", 7: "bottom-right", 8: "bottom-left"}


def stored_with_marker(width: int, height: int) -> Image.Image:
    img = Image.new("RGB", (width, height), BLUE)
    img.paste(RED, (0, 0, width // 8, height // 8))
    return img


def corner(img: Image.Image, name: str) -> tuple:
    inset_x, inset_y = max(1, img.width // 40), max(1, img.height // 40)
    x = inset_x if "left" in name else img.width - 1 - inset_x
    y = inset_y if "top" in name else img.height - 1 - inset_y
    return img.getpixel((x, y))


def test_orientation_6_comes_out_upright():
    # Stored 400x200, displayed rotated 90 degrees clockwise: 200x400.
    data = with_metadata(stored_with_marker(400, 200), "JPEG", orientation=6)
    info = inspect_upload(data, MAX_PIXELS)
    assert (info.width, info.height) == (200, 400)
    result = make_derivatives(data)
    assert (result.width, result.height) == (200, 400)
    for name in ("high_resolution", "standard_resolution", "low_resolution"):
        img = decode(result.derivatives[name])
        assert img.height > img.width, name
        assert img.size == (200, 400)  # small source: never upscaled
        assert near(corner(img, "top-right"), RED), name
        for other in ("top-left", "bottom-left", "bottom-right"):
            assert near(corner(img, other), BLUE), (name, other)
    assert decode(result.derivatives[THUMBNAIL]).size == (150, 150)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_small(orientation):
    data = encode(stored_with_marker(400, 200), "JPEG", exif=phone_exif(orientation).tobytes())
    # The table above is ImageOps.exif_transpose's behaviour...
    reference = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert near(corner(reference.convert("RGB"), MARKER_CORNER[orientation]), RED)
    # ...and ours.
    high = decode(make_derivatives(data).derivatives["high_resolution"])
    assert high.size == ((200, 400) if orientation >= 5 else (400, 200))
    assert near(corner(high, MARKER_CORNER[orientation]), RED)
    for other in set(MARKER_CORNER.values()) - {MARKER_CORNER[orientation]}:
        assert near(corner(high, other), BLUE), other


# The stored pixels of an upright picture, per orientation (the inverse of
# what the orientation asks a viewer to do).
T = Image.Transpose
STORE = {1: None, 2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM,
         5: T.TRANSPOSE, 6: T.ROTATE_90, 7: T.TRANSVERSE, 8: T.ROTATE_270}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_keeps_full_resolution(orientation):
    """A 2000x4000 portrait, stored sideways for orientations 5-8 (4000x2000).
    The reduced JPEG decode must be sized on the upright width (2000), not
    on the stored one (4000): otherwise the 1080 derivative is stretched
    from a 500-wide decode and fine detail is lost. Its lower half has
    vertical stripes, 3 px white / 3 px blue, that survive only the former."""
    upright = Image.new("RGB", (2000, 4000), BLUE)
    upright.paste(RED, (0, 0, 250, 500))
    for x in range(0, 2000, 6):
        upright.paste((255, 255, 255), (x, 2000, x + 3, 4000))
    stored = upright if STORE[orientation] is None else upright.transpose(STORE[orientation])
    data = encode(stored, "JPEG", exif=phone_exif(orientation).tobytes())
    result = make_derivatives(data)
    assert (result.width, result.height) == (2000, 4000)
    high = decode(result.derivatives["high_resolution"])
    assert high.size == (1080, 2160)
    assert near(corner(high, "top-left"), RED)
    assert near(corner(high, "top-right"), BLUE)
    stripes = high.crop((100, 1500, 980, 1700)).convert("L")
    assert ImageStat.Stat(stripes).stddev[0] > 50  # ~66 here; ~35 if blurred away


def test_heic_orientation_is_applied():
    # pillow_heif stores EXIF orientation 6 as an irot transform.
    data = with_metadata(stored_with_marker(400, 200), "HEIF", orientation=6)
    assert (inspect_upload(data, MAX_PIXELS).width, inspect_upload(data, MAX_PIXELS).height) == (200, 400)
    high = decode(make_derivatives(data).derivatives["high_resolution"])
    assert high.size == (200, 400)
    assert near(corner(high, "top-right"), RED)


# -- metadata ----------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF"])
def test_no_metadata_in_any_derivative(fmt):
    data = with_metadata(picture(1200, 900), fmt)
    # The input really carries what must be removed.
    source = Image.open(io.BytesIO(data))
    assert source.getexif().get(ExifTags.Base.Make) == MAKE
    assert source.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    for derivative in make_derivatives(data).derivatives.values():
        img = decode(derivative)
        assert len(img.getexif()) == 0
        for key in ("exif", "xmp", "XML:com.adobe.xmp", "comment", "icc_profile"):
            assert key not in img.info, (derivative.name, key)
        for secret in SECRETS:
            assert secret not in derivative.data, (derivative.name, secret)


# -- refusals ----------------------------------------------------------------

def rejected(data: bytes, max_pixels: int = MAX_PIXELS) -> str:
    with pytest.raises(ImageRejected) as caught:
        inspect_upload(data, max_pixels)
    assert caught.value.message and str(caught.value) == caught.value.message
    assert isinstance(caught.value, ValueError)
    return caught.value.error_type


def test_empty_upload():
    assert rejected(b"") == "APIInvalidImage"


@pytest.mark.parametrize("data", [
    b"hello, this is not an image at all",
    b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
    b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom",  # an MP4
    b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf",  # AVIF
], ids=["text", "pdf", "mp4", "avif"])
def test_not_an_accepted_image(data):
    assert rejected(data) == "APIUnsupportedMediaType"


def test_gif_is_refused():
    assert rejected(encode(picture(64, 64, "P"), "GIF")) == "APIUnsupportedMediaType"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF"])
def test_cut_in_half_is_refused(fmt):
    data = encode(picture(800, 600), fmt)
    assert rejected(data[: len(data) // 2]) == "APIInvalidImage"
    with pytest.raises(ImageRejected) as caught:
        make_derivatives(data[: len(data) // 2])
    assert caught.value.error_type == "APIInvalidImage"


def test_jpeg_missing_its_last_bytes_is_refused():
    data = encode(picture(800, 600), "JPEG")
    assert rejected(data[:-100]) == "APIInvalidImage"


def test_png_missing_iend_is_refused():
    data = encode(picture(800, 600), "PNG")
    assert data.endswith(png_chunk(b"IEND", b""))
    assert rejected(data[:-12]) == "APIInvalidImage"


def test_corrupt_png_is_refused():
    data = bytearray(encode(picture(800, 600), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 100] ^= 0xFF  # the chunk's CRC no longer matches
    assert rejected(bytes(data)) == "APIInvalidImage"


@pytest.mark.parametrize("data", [png_bomb(), jpeg_bomb()], ids=["png", "jpeg"])
def test_decompression_bomb_header_is_refused(data):
    assert rejected(data) == "APIImageTooLarge"


def test_max_pixels_is_enforced_from_the_header():
    # Well under Pillow's own bomb limit: our max_pixels decides.
    assert rejected(png_bomb(3000, 3000), max_pixels=1_000_000) == "APIImageTooLarge"
    assert rejected(encode(picture(1200, 900), "JPEG"), max_pixels=1_000_000) == "APIImageTooLarge"
    assert inspect_upload(encode(picture(1000, 1000), "JPEG"), max_pixels=1_000_000).width == 1000


# -- sizes -------------------------------------------------------------------

def test_small_source_is_never_upscaled():
    result = make_derivatives(encode(picture(200, 100), "PNG"))
    check_set(result, 200, 100, {
        "high_resolution": (200, 100),
        "standard_resolution": (200, 100),
        "low_resolution": (200, 100),
        THUMBNAIL: (100, 100),
    })


def test_medium_source_keeps_its_width_where_smaller():
    result = make_derivatives(encode(picture(500, 300), "JPEG"))
    check_set(result, 500, 300, {
        "high_resolution": (500, 300),
        "standard_resolution": (500, 300),
        "low_resolution": (320, 192),
        THUMBNAIL: (150, 150),
    })


def test_portrait_and_panorama():
    portrait = make_derivatives(encode(picture(1200, 1600), "JPEG"))
    assert portrait.derivatives["high_resolution"].height == 1440
    assert portrait.derivatives["low_resolution"].height == 427
    # 1080 wide is only 54 px tall: the square thumbnail is cut from a
    # larger decode instead.
    panorama = make_derivatives(encode(picture(6000, 300), "JPEG"))
    check_set(panorama, 6000, 300, {
        "high_resolution": (1080, 54),
        "standard_resolution": (640, 32),
        "low_resolution": (320, 16),
        THUMBNAIL: (150, 150),
    })


def test_thumbnail_is_the_centre_square():
    img = Image.new("RGB", (900, 300), BLUE)
    img.paste(RED, (300, 0, 600, 300))  # the centre square is red
    thumb = decode(make_derivatives(encode(img, "PNG")).derivatives[THUMBNAIL])
    assert thumb.size == (150, 150)
    for xy in ((2, 2), (147, 2), (2, 147), (147, 147), (75, 75)):
        assert near(thumb.getpixel(xy), RED), xy


# -- blurhash ----------------------------------------------------------------

def test_blurhash_is_valid():
    red = make_derivatives(encode(Image.new("RGB", (800, 600), RED), "JPEG")).blurhash
    blue = make_derivatives(encode(Image.new("RGB", (800, 600), BLUE), "JPEG")).blurhash
    for value in (red, blue):
        # 4x3 components: size flag 'L', then 1 + 1 + 4 + 11 * 2 characters.
        assert len(value) == 28 and value[0] == "L"
        assert blurhash.is_valid_blurhash(value)
    assert red != blue
    assert near(blurhash.decode(red, 4, 3).convert("RGB").getpixel((1, 1)), RED, tolerance=30)
