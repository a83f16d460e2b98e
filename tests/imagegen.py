"""Write every odd input case the decoder must survive into a folder.

Shared by the decode, pipeline and CLI tests (``from imagegen import write_cases``; pytest
puts ``tests/`` on ``sys.path``). Everything is generated with Pillow in a few
milliseconds, except :func:`large_jpeg`, which is left out of :func:`write_cases`.

Example:
    >>> cases = write_cases(tmp_path)  # doctest: +SKIP
    >>> cases["truncated_jpeg"].reason
    'truncated'
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

RED = (220, 20, 30)
BLUE = (20, 40, 200)
GREY = (128, 128, 128)
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class Case:
    """One generated input.

    Attributes:
        name: the case's key in :func:`write_cases`.
        path: the file's path as bytes (some names are not valid UTF-8).
        reason: the expected failure reason, ``None`` when it must decode.
        color: the expected RGB of the decoded image's centre, when known.
    """

    name: str
    path: bytes
    reason: str | None = None
    color: tuple[int, int, int] | None = None


def _save(img: Image.Image, path: Path, fmt: str, **kw: object) -> Path:
    img.save(path, fmt, **kw)
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def jpeg_bytes(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def solid(size: tuple[int, int], color: tuple[int, ...], mode: str = "RGB") -> Image.Image:
    """A one-colour image; ``size`` is (width, height) as in Pillow."""
    return Image.new(mode, size, color)


def asymmetric(size: tuple[int, int] = (60, 30)) -> Image.Image:
    """Grey, with a red block in the top-left (w/3 x h/3): shows any rotation or flip."""
    img = solid(size, GREY)
    w, h = size
    img.paste(RED, (0, 0, w // 3, h // 3))
    return img


# --------------------------------------------------------------------------- not images


def zero_bytes(folder: Path, name: str = "empty.jpg") -> Path:
    return _write(folder / name, b"")


def text_named_jpg(folder: Path, name: str = "notes.jpg") -> Path:
    return _write(folder / name, b"this is a shopping list, not a photo\n" * 4)


def svg_file(folder: Path, name: str = "drawing.svg") -> Path:
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    return _write(folder / name, svg + b'<rect width="10" height="10" fill="red"/></svg>\n')


def eps_file(folder: Path, name: str = "figure.eps") -> Path:
    eps = (
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
        b"newpath 0 0 moveto 10 0 lineto 10 10 lineto closepath fill\nshowpage\n%%EOF\n"
    )
    return _write(folder / name, eps)


def pdf_file(folder: Path, name: str = "scan.jpg") -> Path:
    """A PDF (made by Pillow) named .jpg."""
    buf = io.BytesIO()
    solid((10, 10), RED).save(buf, "PDF")
    return _write(folder / name, buf.getvalue())


def psd_file(folder: Path, name: str = "layers.psd") -> Path:
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 10, 10, 8, 3)
    return _write(folder / name, header + b"\x00" * 64)


# --------------------------------------------------------------------------- broken images


def png_named_jpg(folder: Path, name: str = "really_png.jpg") -> Path:
    return _save(solid((32, 24), BLUE), folder / name, "PNG")


def truncated_jpeg(folder: Path, name: str = "half.jpg") -> Path:
    rng = np.random.default_rng(1)
    noise = Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    data = jpeg_bytes(noise, quality=90)
    return _write(folder / name, data[: len(data) // 2])


def truncated_png(folder: Path, name: str = "half.png") -> Path:
    rng = np.random.default_rng(2)
    noise = Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    buf = io.BytesIO()
    noise.save(buf, "PNG")
    data = buf.getvalue()
    return _write(folder / name, data[: len(data) // 2])


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int, color_type: int = 2) -> bytes:
    """A PNG claiming ``width`` x ``height`` with almost no pixel data (a few hundred bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def bomb_png(folder: Path, name: str = "bomb.png", side: int = 30000) -> Path:
    """Claims side x side pixels (900 megapixels by default) in a few hundred bytes."""
    return _write(folder / name, png_header_only(side, side))


def corrupt_exif_jpeg(folder: Path, name: str = "bad_exif.jpg") -> Path:
    """A JPEG whose EXIF block is garbage: must still decode, unrotated."""
    return _save(asymmetric(), folder / name, "JPEG", quality=95, exif=b"Exif\x00\x00MM\x00*junk")


# --------------------------------------------------------------------------- special files


def fifo(folder: Path, name: str = "pipe.jpg") -> Path:
    path = folder / name
    os.mkfifo(path)
    return path


def unix_socket(folder: Path, name: str = "sock.jpg") -> Path:
    """A bound unix socket (the file stays after the socket object is closed)."""
    path = folder / name
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        if len(os.fsencode(path)) < 100:
            s.bind(os.fspath(path))
        else:  # AF_UNIX paths are limited to ~108 bytes: bind relative to the folder
            old = os.getcwd()
            os.chdir(folder)
            try:
                s.bind(name)
            finally:
                os.chdir(old)
    return path


def directory_named_jpg(folder: Path, name: str = "photo.jpg") -> Path:
    path = folder / name
    path.mkdir()
    return path


# --------------------------------------------------------------------------- orientation, colour


def exif_oriented_jpeg(folder: Path, orientation: int, name: str | None = None) -> Path:
    """:func:`asymmetric` (60x30) stored with EXIF orientation ``orientation``."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = folder / (name or f"orient{orientation}.jpg")
    return _save(asymmetric(), path, "JPEG", quality=95, exif=exif.tobytes())


def _strip_app14(data: bytes) -> bytes:
    """Remove the Adobe APP14 segment from a JPEG."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker == 0xEE:
            return data[:i] + data[i + 2 + length :]
        if marker == 0xDA:
            break
        i += 2 + length
    raise ValueError("no APP14 segment")


def cmyk_jpeg(folder: Path, adobe: bool = True, name: str | None = None) -> Path:
    """A CMYK JPEG of pure red ink (C=0, M=Y=255, K=0).

    ``adobe=True``: Pillow's writer, which stores inverted values with an Adobe APP14
    marker (Photoshop's convention). ``adobe=False``: plain ink values and no APP14 marker,
    as some non-Adobe software writes them.
    """
    ink = solid((32, 32), (0, 255, 255, 0), "CMYK")
    path = folder / (name or ("cmyk_adobe.jpg" if adobe else "cmyk_plain.jpg"))
    if adobe:
        return _save(ink, path, "JPEG", quality=95)
    # Pillow's encoder inverts; feed it inverted ink so the stored bytes are plain ink.
    inverted = Image.merge("CMYK", [b.point(lambda v: 255 - v) for b in ink.split()])
    return _write(path, _strip_app14(jpeg_bytes(inverted, quality=95)))


def sixteen_bit_png(folder: Path, name: str = "deep.png") -> Path:
    """A 16-bit grey PNG (mode ``I;16``), a 0..4095 ramp left to right (12-bit data)."""
    ramp = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (16, 1))
    return _save(Image.fromarray(ramp), folder / name, "PNG")


def float_tiff(folder: Path, name: str = "float.tif") -> Path:
    """A 32-bit float TIFF (mode ``F``), a -5..5 ramp."""
    ramp = np.tile(np.linspace(-5, 5, 64, dtype=np.float32), (16, 1))
    return _save(Image.fromarray(ramp), folder / name, "TIFF")


def transparent_pngs(folder: Path) -> dict[str, Path]:
    """Left half fully transparent, right half opaque blue, in modes P, LA and RGBA.

    Every fully transparent pixel must decode as white. The transparent pixels' own colour
    is black, so compositing on black (the classic bug) shows.
    """
    out = {}
    rgba = solid((32, 16), (0, 0, 0, 0), "RGBA")
    rgba.paste((*BLUE, 255), (16, 0, 32, 16))
    out["rgba_png"] = _save(rgba, folder / "rgba.png", "PNG")
    la = solid((32, 16), (0, 0), "LA")
    la.paste((90, 255), (16, 0, 32, 16))
    out["la_png"] = _save(la, folder / "la.png", "PNG")
    p = Image.new("P", (32, 16), 0)
    p.putpalette([0, 0, 0, *BLUE] + [0] * (256 * 3 - 6))
    p.paste(1, (16, 0, 32, 16))
    out["p_transparency_png"] = _save(p, folder / "palette.png", "PNG", transparency=0)
    out["p_transparency_gif"] = _save(p, folder / "palette.gif", "GIF", transparency=0)
    return out


def animations(folder: Path) -> dict[str, Path]:
    """Two-frame animations, red then blue: the first frame (red) must be decoded."""
    frames = [solid((24, 24), RED), solid((24, 24), BLUE)]
    out = {}
    kw = {"save_all": True, "append_images": frames[1:], "duration": 100, "loop": 0}
    out["animated_gif"] = _save(frames[0], folder / "anim.gif", "GIF", **kw)
    out["animated_webp"] = _save(frames[0], folder / "anim.webp", "WEBP", lossless=True, **kw)
    out["apng"] = _save(frames[0], folder / "anim.png", "PNG", **kw)
    return out


def heic_file(folder: Path, name: str = "phone.heic", color: tuple[int, int, int] = RED) -> Path:
    """A HEIC image (needs pillow_heif to write)."""
    import pillow_heif

    heif = pillow_heif.from_pillow(solid((64, 48), color))
    heif.save(folder / name, quality=90)
    return folder / name


def avif_file(folder: Path, name: str = "modern.avif", color: tuple[int, int, int] = BLUE) -> Path:
    return _save(solid((64, 48), color), folder / name, "AVIF", quality=90)


def large_jpeg(folder: Path, size: tuple[int, int] = (8660, 5773), name: str = "big.jpg") -> Path:
    """A big (default 50-megapixel) JPEG: red left half, blue right half.

    Takes about a second and ~150 MB to write; not part of :func:`write_cases`.
    """
    img = solid(size, RED)
    img.paste(BLUE, (size[0] // 2, 0, size[0], size[1]))
    return _save(img, folder / name, "JPEG", quality=80)


# --------------------------------------------------------------------------- all at once


def write_cases(folder: Path, *, special_files: bool = True) -> dict[str, Case]:
    """Write every fast case into ``folder`` (created if needed).

    Args:
        folder: where to write.
        special_files: include the FIFO and the unix socket (some tools choke on them).

    Returns:
        ``{name: Case}``; ``Case.reason`` is the expected failure code or ``None``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def add(name: str, path: Path | bytes, reason: str | None = None, color=None) -> None:
        cases.append(Case(name, os.fsencode(path), reason, color))

    add("zero_bytes", zero_bytes(folder), "empty")
    add("text_named_jpg", text_named_jpg(folder), "not-an-image")
    add("png_named_jpg", png_named_jpg(folder), None, BLUE)
    add("truncated_jpeg", truncated_jpeg(folder), "truncated")
    add("truncated_png", truncated_png(folder), "truncated")
    add("bomb_png", bomb_png(folder), "too-large")
    add("svg", svg_file(folder), "unsupported-format")
    add("eps", eps_file(folder), "unsupported-format")
    add("pdf_named_jpg", pdf_file(folder), "unsupported-format")
    add("psd", psd_file(folder), "unsupported-format")
    add("directory_named_jpg", directory_named_jpg(folder), "not-a-regular-file")
    if special_files:
        add("fifo", fifo(folder), "not-a-regular-file")
        add("unix_socket", unix_socket(folder), "not-a-regular-file")
    add("orient6", exif_oriented_jpeg(folder, 6), None, GREY)
    add("orient8", exif_oriented_jpeg(folder, 8), None, GREY)
    add("corrupt_exif", corrupt_exif_jpeg(folder), None, GREY)
    add("cmyk_adobe", cmyk_jpeg(folder, adobe=True), None, (255, 0, 0))
    add("cmyk_plain", cmyk_jpeg(folder, adobe=False), None, (255, 0, 0))
    add("sixteen_bit_png", sixteen_bit_png(folder))
    add("float_tiff", float_tiff(folder))
    for name, path in transparent_pngs(folder).items():
        add(name, path)
    for name, path in animations(folder).items():
        add(name, path, None, RED)
    add("tiny_1x1", _save(solid((1, 1), RED), folder / "tiny.png", "PNG"), None, RED)
    add("wide_10000x2", _save(solid((10000, 2), BLUE), folder / "wide.png", "PNG"), None, BLUE)
    add("avif", avif_file(folder), None, BLUE)
    with contextlib.suppress(ImportError):  # pillow_heif writes it; optional
        add("heic", heic_file(folder), None, RED)
    name = os.fsencode(folder) + b"/caf\xe9.jpg"
    with open(name, "wb") as f:
        f.write(jpeg_bytes(solid((16, 16), RED), quality=95))
    add("non_utf8_name", name, None, RED)
    return {c.name: c for c in cases}


# --------------------------------------------------------------------------- pool hooks


def marker_decode(path: bytes, pre: object, limits: object, **kw: object):
    """A ``decode_fn`` for pool tests: misbehaves when the file name contains a marker.

    ``crash``: ``os._exit(3)``; ``segv``: a segmentation fault; ``hang``: sleeps ten
    minutes; ``stubborn``: ignores SIGALRM, then sleeps; ``hog``: allocates 8 GiB.
    Anything else decodes normally with :func:`lookalike.decode.decode_path`.
    """
    from lookalike.decode import decode_path

    base = os.path.basename(os.fsencode(path))
    if b"crash" in base:
        os._exit(3)
    if b"segv" in base:
        import ctypes

        ctypes.string_at(0)
    if b"stubborn" in base:
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        time.sleep(600)
    if b"hang" in base:
        time.sleep(600)
    if b"hog" in base:
        hog = bytearray(8 << 30)
        del hog
    return decode_path(path, pre, limits, **kw)  # type: ignore[arg-type]


def marker_upload_decode(path: bytes, pre: object, limits: object, **kw: object):
    """A ``decode_fn`` for the web server's upload worker: misbehaves when the uploaded
    bytes contain a marker (``path`` carries them). ``CRASH-ME``: a segmentation fault;
    ``HANG-ME``: sleeps ten minutes. Anything else decodes as the server does."""
    from lookalike.web.uploads import decode_upload

    if b"CRASH-ME" in path:
        import ctypes

        ctypes.string_at(0)
    if b"HANG-ME" in path:
        time.sleep(600)
    return decode_upload(path, pre, limits, **kw)  # type: ignore[arg-type]
