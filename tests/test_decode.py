"""lookalike.decode.image: every odd file becomes pixels or one reason code, never a hang."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import imagegen
import numpy as np
import pytest
from imagegen import BLUE, GREY, RED
from PIL import EpsImagePlugin, Image, ImageFile

from lookalike.decode import (
    REASONS,
    TRANSIENT_REASONS,
    DecodeFailure,
    DecodeLimits,
    content_hash,
    decode_path,
    load_for_display,
    open_rgb,
    read_file,
    to_model_input,
    to_rgb,
)
from lookalike.errors import ConfigError
from lookalike.setup import Preprocess

PRE = Preprocess()
CENTER = Preprocess(mode="center")


def failure(path: Path | bytes, **kw) -> DecodeFailure:
    with pytest.raises(DecodeFailure) as info:
        decode_path(os.fsencode(path), kw.pop("pre", PRE), **kw)
    assert info.value.reason in REASONS
    return info.value


def stored(path: Path) -> tuple[str, int]:
    """The file's Pillow mode and frame count, as stored."""
    with Image.open(path) as im:
        return im.mode, getattr(im, "n_frames", 1)


def close(a, b, tol: int = 12) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return imagegen.write_cases(tmp_path_factory.mktemp("cases"))


# --------------------------------------------------------------------------- the catalogue


def test_every_generated_case_decodes_or_fails_with_its_reason(cases):
    for pre in (PRE, CENTER):
        for case in cases.values():
            try:
                pixels, digest = decode_path(case.path, pre)
            except DecodeFailure as e:
                assert e.reason == case.reason, (case.name, e)
                continue
            assert case.reason is None, case.name
            assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8, case.name
            assert pixels.flags.c_contiguous
            assert len(digest) == 32
            if case.color is not None:
                assert close(pixels[112, 112], case.color), (case.name, pixels[112, 112])


def test_reason_codes_are_documented():
    assert REASONS.keys() >= TRANSIENT_REASONS
    for code in ("empty", "vanished", "changed", "decode-timeout", "heif-plugin-missing"):
        assert code in TRANSIENT_REASONS
    for code in ("not-an-image", "truncated", "too-large", "unsupported-format"):
        assert code not in TRANSIENT_REASONS
    assert "lookalike[heif]" in REASONS["heif-plugin-missing"]


def test_decode_failure_pickles_and_reads():
    e = pickle.loads(pickle.dumps(DecodeFailure("truncated", "3 bytes not processed")))
    assert (e.reason, e.detail) == ("truncated", "3 bytes not processed")
    assert str(e) == "truncated: 3 bytes not processed"


# --------------------------------------------------------------------------- not images


def test_zero_bytes_is_empty_and_transient(tmp_path):
    e = failure(imagegen.zero_bytes(tmp_path))
    assert e.reason == "empty" and "empty" in TRANSIENT_REASONS


def test_text_named_jpg_is_not_an_image(tmp_path):
    assert failure(imagegen.text_named_jpg(tmp_path)).reason == "not-an-image"


def test_png_named_jpg_decodes_by_content(tmp_path):
    pixels, _ = decode_path(imagegen.png_named_jpg(tmp_path), PRE)
    assert close(pixels[0, 0], BLUE, 0)


@pytest.mark.parametrize("make", [imagegen.svg_file, imagegen.pdf_file, imagegen.psd_file])
def test_vector_and_document_formats_are_unsupported(tmp_path, make):
    assert failure(make(tmp_path)).reason == "unsupported-format"


def test_eps_never_reaches_the_eps_plugin_or_ghostscript(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the EPS plugin or Ghostscript was touched")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", boom)
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", boom)
    monkeypatch.setattr(subprocess, "Popen", boom)
    for name in ("figure.eps", "figure.jpg"):  # named as a photo too
        e = failure(imagegen.eps_file(tmp_path, name))
        assert e.reason == "unsupported-format" and "EPS" in e.detail


def test_eps_cannot_be_allowed():
    with pytest.raises(ConfigError, match="EPS"):
        DecodeLimits(allowed_formats=frozenset({"JPEG", "EPS"}))


def test_a_format_left_out_of_the_allowlist_is_unsupported(tmp_path):
    path = imagegen.png_named_jpg(tmp_path)
    e = failure(path, limits=DecodeLimits(allowed_formats=frozenset({"JPEG"})))
    assert e.reason == "unsupported-format" and "PNG" in e.detail


# --------------------------------------------------------------------------- broken images


@pytest.mark.parametrize("make", [imagegen.truncated_jpeg, imagegen.truncated_png])
def test_truncated_images_fail_even_if_someone_enabled_loading_them(tmp_path, make, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert failure(make(tmp_path)).reason == "truncated"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is put back


def test_decompression_bomb_is_too_large_quietly(tmp_path):
    path = imagegen.bomb_png(tmp_path)
    assert path.stat().st_size < 1000
    before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        e = failure(path)
    assert e.reason == "too-large" and "900000000 pixels" in e.detail
    assert caught == []  # the core never prints, not even through warnings
    assert before == Image.MAX_IMAGE_PIXELS


def test_pixel_limit_is_configurable(tmp_path):
    path = tmp_path / "square.png"
    imagegen.solid((100, 100), RED).save(path)
    assert failure(path, limits=DecodeLimits(max_pixels=9_999)).reason == "too-large"
    pixels, _ = decode_path(path, PRE, DecodeLimits(max_pixels=10_000))
    assert close(pixels[0, 0], RED, 0)


def test_pillows_own_89_megapixel_limit_does_not_apply(tmp_path):
    # 100 megapixels passes the default 180-megapixel limit; the data is missing, so it is
    # "truncated", not "too-large". A lower limit rejects it before anything is allocated.
    path = tmp_path / "hundred_mp.png"
    path.write_bytes(imagegen.png_header_only(10_000, 10_000, color_type=0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert failure(path).reason == "truncated"
    assert caught == []
    assert failure(path, limits=DecodeLimits(max_pixels=50_000_000)).reason == "too-large"


def test_file_size_limit_is_checked_before_reading(tmp_path):
    path = imagegen.png_named_jpg(tmp_path)
    e = failure(path, limits=DecodeLimits(max_file_bytes=10))
    assert e.reason == "too-large" and "file limit" in e.detail


# --------------------------------------------------------------------------- special files


def _returns_promptly(fn, seconds: float = 5.0):
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "the call blocked"
    return box


@pytest.mark.parametrize("make", [imagegen.fifo, imagegen.unix_socket])
def test_fifo_and_socket_are_never_opened(tmp_path, make):
    path = make(tmp_path)
    box = _returns_promptly(lambda: read_file(os.fsencode(path)))
    assert isinstance(box["error"], DecodeFailure)
    assert box["error"].reason == "not-a-regular-file"


def test_fifo_swapped_in_after_the_stat_still_does_not_block(tmp_path, monkeypatch):
    path = imagegen.fifo(tmp_path)
    regular = os.stat(imagegen.png_named_jpg(tmp_path))
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: regular if p == path else real_stat(p))
    box = _returns_promptly(lambda: read_file(path))
    monkeypatch.undo()
    assert box["error"].reason == "not-a-regular-file"


def test_directory_named_photo_jpg(tmp_path):
    e = failure(imagegen.directory_named_jpg(tmp_path))
    assert e.reason == "not-a-regular-file" and "directory" in e.detail


def test_vanished_file(tmp_path):
    path = imagegen.png_named_jpg(tmp_path)
    st = path.stat()
    path.unlink()
    assert failure(path, expect_size=st.st_size).reason == "vanished"


def test_changed_size_or_mtime(tmp_path):
    path = imagegen.png_named_jpg(tmp_path)
    st = path.stat()
    assert failure(path, expect_size=st.st_size + 1).reason == "changed"
    assert failure(path, expect_mtime_ns=st.st_mtime_ns - 1).reason == "changed"
    decode_path(path, PRE, expect_size=st.st_size, expect_mtime_ns=st.st_mtime_ns)


def test_permission_denied(tmp_path, monkeypatch):
    path = imagegen.png_named_jpg(tmp_path)

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", denied)  # chmod does not stop root, who runs CI
    e = failure(path)
    assert e.reason == "permission-denied" and e.reason in TRANSIENT_REASONS


def test_non_utf8_file_name(tmp_path):
    name = os.fsencode(tmp_path) + b"/caf\xe9.jpg"
    with open(name, "wb") as f:
        f.write(imagegen.jpeg_bytes(imagegen.solid((16, 16), RED), quality=95))
    pixels, _ = decode_path(name, PRE)
    assert close(pixels[5, 5], RED)


# --------------------------------------------------------------------------- orientation


def red_box(img: Image.Image) -> tuple[int, int, int, int]:
    """Bounding box (left, top, right, bottom) of the red pixels."""
    a = np.asarray(img).astype(int)
    mask = (a[..., 0] > 180) & (a[..., 1] < 80)
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_exif_orientation_6_rotates_clockwise(tmp_path):
    img = open_rgb(imagegen.exif_oriented_jpeg(tmp_path, 6).read_bytes())
    assert img.size == (30, 60)  # was 60x30: stored sideways
    left, top, right, bottom = red_box(img)
    assert (left, top) == (20, 0) and (right, bottom) == (30, 20)  # top-left -> top-right


def test_exif_orientation_8_rotates_counter_clockwise(tmp_path):
    img = open_rgb(imagegen.exif_oriented_jpeg(tmp_path, 8).read_bytes())
    assert img.size == (30, 60)
    left, top, right, bottom = red_box(img)
    assert (left, top) == (0, 40) and (right, bottom) == (10, 60)  # top-left -> bottom-left


def test_orientation_survives_the_model_resize(tmp_path):
    pixels, _ = decode_path(imagegen.exif_oriented_jpeg(tmp_path, 6), PRE)
    assert close(pixels[10, 210], RED, 30) and close(pixels[10, 10], GREY, 30)


@pytest.mark.parametrize("orientation", [0, 9, 99])
def test_bad_orientation_values_are_ignored(tmp_path, orientation):
    img = open_rgb(imagegen.exif_oriented_jpeg(tmp_path, orientation).read_bytes())
    assert img.size == (60, 30) and red_box(img)[:2] == (0, 0)


def test_corrupt_exif_decodes_unrotated(tmp_path):
    img = open_rgb(imagegen.corrupt_exif_jpeg(tmp_path).read_bytes())
    assert img.size == (60, 30) and red_box(img)[:2] == (0, 0)


# --------------------------------------------------------------------------- colour


@pytest.mark.parametrize("adobe", [True, False])
def test_cmyk_jpeg_colours(tmp_path, adobe):
    data = imagegen.cmyk_jpeg(tmp_path, adobe=adobe).read_bytes()
    assert (b"Adobe" in data) is adobe
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    img = open_rgb(data)
    assert close(img.getpixel((16, 16)), (255, 0, 0), 8)


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    path = imagegen.sixteen_bit_png(tmp_path)
    assert stored(path)[0] in ("I;16", "I;16B", "I")
    a = np.asarray(open_rgb(path.read_bytes()))[8, :, 0].astype(int)
    assert a[0] == 0 and a[-1] == 255  # 0..4095 spans 0..255
    assert (np.diff(a) >= 0).all() and len(set(a.tolist())) > 30
    assert (np.asarray(open_rgb(path.read_bytes())) < 255).mean() > 0.9


def test_full_range_16_bit_keeps_its_brightness():
    mid = Image.fromarray(np.full((4, 4), 32768, np.uint16))
    assert abs(int(to_rgb(mid).getpixel((0, 0))[0]) - 128) <= 1


def test_float_image_is_stretched(tmp_path):
    path = imagegen.float_tiff(tmp_path)
    assert stored(path)[0] == "F"
    a = np.asarray(open_rgb(path.read_bytes()))[8, :, 0].astype(int)
    assert a[0] == 0 and a[-1] == 255 and (np.diff(a) >= 0).all()


@pytest.mark.parametrize("name", ["rgba_png", "la_png", "p_transparency_png", "p_transparency_gif"])
def test_transparent_pixels_become_white(tmp_path, name):
    path = imagegen.transparent_pngs(tmp_path)[name]
    img = open_rgb(path.read_bytes())
    assert img.getpixel((2, 8)) == (255, 255, 255)  # transparent black -> white, not black
    right = img.getpixel((28, 8))
    assert right == ((90, 90, 90) if name == "la_png" else BLUE)


def test_pa_and_premultiplied_modes_composite_on_white():
    pa = Image.new("PA", (4, 1))
    pa.putpalette([0, 0, 0, *BLUE] + [0] * 762)
    pa.putpixel((0, 0), (0, 0))
    pa.putpixel((3, 0), (1, 255))
    rgb = to_rgb(pa)
    assert rgb.mode == "RGB"
    assert rgb.getpixel((0, 0)) == (255, 255, 255) and rgb.getpixel((3, 0)) == BLUE
    half = to_rgb(Image.new("RGBA", (1, 1), (0, 0, 0, 128)))
    assert close(half.getpixel((0, 0)), (127, 127, 127), 1)


@pytest.mark.parametrize("name", ["animated_gif", "animated_webp", "apng"])
def test_animations_give_their_first_frame(tmp_path, name):
    path = imagegen.animations(tmp_path)[name]
    assert stored(path)[1] == 2
    assert close(open_rgb(path.read_bytes()).getpixel((5, 5)), RED, 4)


# --------------------------------------------------------------------------- sizes


def test_one_pixel_and_10000x2(tmp_path):
    for size in ((1, 1), (10000, 2), (2, 10000)):
        path = tmp_path / f"{size[0]}x{size[1]}.png"
        imagegen.solid(size, RED).save(path)
        for pre in (PRE, CENTER, Preprocess(size=(100, 150), mode="center")):
            t = time.perf_counter()
            pixels, _ = decode_path(path, pre)
            assert time.perf_counter() - t < 2
            assert pixels.shape == (*pre.size, 3) and close(pixels[10, 10], RED, 0)


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory):
    return imagegen.large_jpeg(tmp_path_factory.mktemp("big"))  # 8660x5773, 50 MP


def test_50_megapixel_jpeg_decodes_fast_at_reduced_scale(big_jpeg):
    data = big_jpeg.read_bytes()
    assert open_rgb(data, draft_to=(256, 256)).size == (1083, 722)  # 1/8 DCT scale
    t = time.perf_counter()
    pixels, _ = decode_path(big_jpeg, CENTER)
    assert time.perf_counter() - t < 3.0
    assert close(pixels[112, 5], RED) and close(pixels[112, 218], BLUE)


def test_reduced_scale_decode_respects_orientation(tmp_path):
    # Stored 4000x500 with orientation 6: displayed 500 wide, 4000 tall. Asking for at
    # least 2000 tall and 100 wide allows 1/2 scale (250x2000), not more.
    exif = Image.Exif()
    exif[0x0112] = 6
    data = imagegen.jpeg_bytes(imagegen.solid((4000, 500), RED), exif=exif.tobytes())
    assert open_rgb(data, draft_to=(2000, 100)).size == (250, 2000)
    assert open_rgb(data, draft_to=(2001, 100)).size == (500, 4000)


def test_50_megapixel_jpeg_decodes_in_bounded_memory(big_jpeg):
    # Its full RGB is 150 MB; the reduced-scale decode must stay far below that. Peak RSS
    # (VmHWM) of a fresh interpreter: ru_maxrss would carry over this process's peak.
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs Linux /proc")
    code = (
        "import sys\n"
        "from lookalike.decode import decode_path\n"
        "from lookalike.setup import Preprocess\n"
        "def peak():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        "            return int(line.split()[1]) * 1024\n"
        "before = peak()\n"
        "decode_path(sys.argv[1], Preprocess())\n"
        "print(peak() - before)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run(
        [sys.executable, "-c", code, str(big_jpeg)], capture_output=True, env=env, check=True
    )
    grown_mb = int(out.stdout) / 1e6
    assert grown_mb < 60, f"decode grew the process by {grown_mb:.0f} MB"


# --------------------------------------------------------------------------- HEIF / AVIF


def test_heic_decodes_with_pillow_heif(tmp_path):
    pytest.importorskip("pillow_heif")
    pixels, _ = decode_path(imagegen.heic_file(tmp_path, color=RED), PRE)
    assert close(pixels[112, 112], RED)


def test_heic_without_the_plugin_names_the_extra(tmp_path, monkeypatch):
    pytest.importorskip("pillow_heif")
    path = imagegen.heic_file(tmp_path)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import now raises ImportError
    e = failure(path)
    assert e.reason == "heif-plugin-missing" and "lookalike[heif]" in e.detail


def test_avif_decodes(tmp_path):
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF")
    pixels, _ = decode_path(imagegen.avif_file(tmp_path, color=BLUE), PRE)
    assert close(pixels[112, 112], BLUE)


# --------------------------------------------------------------------------- model input


def halves(size=(640, 480)) -> Image.Image:
    img = imagegen.solid(size, RED)
    img.paste(BLUE, (size[0] // 2, 0, *size))
    return img


def test_resize_squashes_the_whole_image():
    pixels = to_model_input(halves(), Preprocess(size=(100, 150)))
    assert pixels.shape == (100, 150, 3) and pixels.dtype == np.uint8
    assert close(pixels[50, 0], RED, 0) and close(pixels[50, 149], BLUE, 0)


def test_center_crop_arithmetic_matches_timm():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    # Square: shorter side -> floor(224 / 0.875) = 256, longer int(256 * 640 / 480) = 341;
    # crop offsets int(round(117 / 2)) = 58 (round half to even), (256 - 224) / 2 = 16.
    want = img.resize((341, 256), Image.Resampling.BILINEAR).crop((58, 16, 282, 240))
    assert np.array_equal(to_model_input(img, CENTER), np.asarray(want))
    # The longer side is truncated, not rounded: int(256 * 640 / 427) = int(383.7) = 383;
    # left offset int(round(79.5)) = 80.
    img427 = img.resize((640, 427))
    want = img427.resize((383, 256), Image.Resampling.BILINEAR).crop((80, 16, 304, 240))
    assert np.array_equal(to_model_input(img427, CENTER), np.asarray(want))
    # Non-square (h=240, w=200): scale (274, 228); ratio min(480/274, 640/228) -> 274x365;
    # crop offsets int(round(17.0)) = 17, int(round(82.5)) = 82.
    pre = Preprocess(size=(240, 200), mode="center", interpolation="bicubic")
    want = img.resize((365, 274), Image.Resampling.BICUBIC).crop((82, 17, 282, 257))
    assert np.array_equal(to_model_input(img, pre), np.asarray(want))


def test_center_crop_pads_with_zeros_when_crop_pct_is_over_one():
    pixels = to_model_input(
        imagegen.solid((300, 300), RED), Preprocess(mode="center", crop_pct=1.25)
    )
    assert pixels.shape == (224, 224, 3)
    assert (pixels[0] == 0).all() and close(pixels[112, 112], RED, 0)  # 179 px of image


def test_preprocess_is_checked():
    with pytest.raises(ConfigError):
        to_model_input(halves(), Preprocess(mode="squash"))
    with pytest.raises(ConfigError):
        to_model_input(halves(), Preprocess(interpolation="magic"))


def test_content_hash_is_stable():
    assert content_hash(b"") == "cae66941d9efbd404e4d88758ea67670"
    assert content_hash(b"abc") == content_hash(bytearray(b"abc")) != content_hash(b"abd")
    assert len(content_hash(b"abc")) == 32


def test_known_hash_skips_decoding(tmp_path):
    path = imagegen.text_named_jpg(tmp_path)  # would fail if it were decoded
    digest = content_hash(path.read_bytes())
    assert decode_path(path, PRE, known_hashes=frozenset({digest})) == (None, digest)


def test_draft_changes_little(tmp_path):
    rng = np.random.default_rng(3)
    small = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    path = tmp_path / "photo.jpg"
    small.resize((2000, 1500), Image.Resampling.BICUBIC).save(path, quality=92)
    fast, _ = decode_path(path, CENTER, draft=True)
    full, _ = decode_path(path, CENTER, draft=False)
    assert np.abs(fast.astype(int) - full).mean() < 3


def test_load_for_display(tmp_path):
    img = load_for_display(imagegen.exif_oriented_jpeg(tmp_path, 6), max_side=40)
    assert img.mode == "RGB" and img.size == (20, 40)
    with pytest.raises(DecodeFailure):
        load_for_display(imagegen.text_named_jpg(tmp_path))


def test_threads_decode_concurrently_and_globals_are_restored(cases):
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    paths = [c.path for c in cases.values() if c.reason is None] * 3
    serial = [decode_path(p, PRE)[1] for p in paths]
    out: list = [None] * len(paths)

    def work(i):
        out[i] = decode_path(paths[i], PRE)[1]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == serial
    assert before == (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)


def test_decode_modules_do_not_import_torch():
    code = "import sys, lookalike.decode, lookalike.decode.pool; print('torch' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, check=True)
    assert out.stdout.strip() == b"False"


def test_reduced_jpegs_resample_only_the_crop(tmp_path):
    """A JPEG decoded at reduced scale is resampled straight from the crop box: within 1 of
    the resize-then-crop result; images decoded at full size keep timm's exact pixels."""
    from lookalike.decode.image import REDUCED
    from lookalike.decode.model_input import scale_size

    rng = np.random.default_rng(4)
    small = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    path = tmp_path / "big.jpg"
    small.resize((2000, 1500), Image.Resampling.BICUBIC).save(path, quality=92)
    data = path.read_bytes()
    reduced = open_rgb(data, draft_to=scale_size(CENTER))
    assert reduced.info[REDUCED] and reduced.size == (500, 375)
    pixels, _ = decode_path(path, CENTER)
    assert np.array_equal(pixels, to_model_input(reduced, CENTER, box=True))
    exact = to_model_input(reduced, CENTER)
    assert np.abs(pixels.astype(int) - exact).max() <= 1
    assert (pixels != exact).mean() < 0.01
    full = open_rgb(data)
    assert not full.info[REDUCED]
    assert np.array_equal(decode_path(path, CENTER, draft=False)[0], to_model_input(full, CENTER))
