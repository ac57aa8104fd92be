"""Images made by the tests themselves: every accepted format, with the
metadata a phone writes (camera, GPS, XMP), sideways photos, broken files."""
from __future__ import annotations

import io
import struct
import zlib

import pillow_heif
from PIL import ExifTags, Image

pillow_heif.register_heif_opener()  # lets Pillow save HEIF too

RED = (220, 20, 20)
BLUE = (20, 40, 220)
MAKE = "ShutterCam"  # camera make and model: must never reach a served file
MODEL = "Model-X-Secret"
XMP_MARKER = "xmp-secret-marker"
XMP = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    f'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:title="{XMP_MARKER}"/>'
    "</rdf:RDF></x:xmpmeta>"
).encode()
# The Eiffel tower: degrees, minutes, seconds.
GPS = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}


def phone_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = MAKE
    exif[ExifTags.Base.Model] = MODEL
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.IFD.GPSInfo] = dict(GPS)
    return exif


def picture(width: int, height: int, color=BLUE) -> Image.Image:
    """A plain image with a gradient, so encoders have something to do."""
    img = Image.new("RGB", (width, height), color)
    band = Image.linear_gradient("L").resize((width, max(1, height // 4)))
    img.paste(Image.merge("RGB", (band, band, band)), (0, height - band.height))
    return img


def encode(img: Image.Image, fmt: str, *, exif: Image.Exif | None = None, xmp: bytes | None = XMP) -> bytes:
    """`img` as JPEG/PNG/WEBP/HEIF bytes, carrying EXIF (camera + GPS) and XMP."""
    exif = phone_exif() if exif is None else exif
    buf = io.BytesIO()
    kwargs = {"exif": exif}
    if fmt in ("JPEG", "WEBP", "PNG") and xmp:
        kwargs["xmp"] = xmp
    if fmt in ("JPEG", "WEBP", "HEIF"):
        kwargs["quality"] = 90
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def jpeg(width: int = 1600, height: int = 1200, **kwargs) -> bytes:
    return encode(picture(width, height), "JPEG", **kwargs)


def sideways_jpeg(upright_width: int = 600, upright_height: int = 1000) -> bytes:
    """A portrait photo stored the way a phone held upright stores it: pixels
    rotated, with EXIF orientation 6 ("rotate 90° clockwise to display").
    The upright picture has a red band at its top."""
    upright = Image.new("RGB", (upright_width, upright_height), BLUE)
    upright.paste(RED, (0, 0, upright_width, upright_height // 5))
    # Orientation 6 is displayed by rotating 90° clockwise, so the stored
    # pixels are the upright ones rotated 90° counter-clockwise.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    return encode(stored, "JPEG", exif=phone_exif(orientation=6))


def png_bomb_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG signature and IHDR announcing a huge image, and a tiny IDAT:
    decoding it would take width*height bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


def gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), RED).save(buf, "GIF")
    return buf.getvalue()


def assert_no_metadata(data: bytes) -> Image.Image:
    """A served derivative: a JPEG without EXIF, GPS, XMP or camera data."""
    img = Image.open(io.BytesIO(data))
    img.load()
    assert img.format == "JPEG"
    assert "exif" not in img.info and "xmp" not in img.info, sorted(img.info)
    assert len(img.getexif()) == 0, dict(img.getexif())
    for marker in (b"Exif\x00\x00", b"http://ns.adobe.com/xap/1.0/", MAKE.encode(), MODEL.encode(),
                   XMP_MARKER.encode(), b"GPS"):
        assert marker not in data, marker
    return img
