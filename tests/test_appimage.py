"""App images (spec §6): the GFH FILE_INFO header, wrap, open/inspect and every refusal."""
from __future__ import annotations

import struct

import pytest

import fotabench
from fotabench import (AppImage, ArgumentError, FileError, FotabenchError, ImageError,
                       ModelError, UnsupportedError)

from conftest import (APP_CHECKS, GFH_SIZE, MODEL_NAMES, NBIOT_ADDRESSES, SPEC_MODELS,
                      SPEC_ROWS, app_bytes, assert_fb_error, check_names, failed_names,
                      gfh_header, listing, raw_bytes, spec_candidates)


# --- exception classes and model table ------------------------------------------------

def test_exception_hierarchy():
    for cls in (ArgumentError, FileError, ImageError, ModelError, fotabench.PackageError,
                fotabench.ChecksumError, fotabench.UrlError, fotabench.CryptoError,
                fotabench.UnsupportedError):
        assert issubclass(cls, FotabenchError)
    assert issubclass(ArgumentError, ValueError)
    assert issubclass(fotabench.UrlError, ValueError)
    assert issubclass(FileError, OSError)
    assert not issubclass(ImageError, (ValueError, OSError))
    assert not issubclass(ModelError, ImageError)


def test_models_match_spec():
    got = [(m.name, m.load_address, m.region_size, m.evidence) for m in fotabench.models()]
    assert sorted(got, key=str) == sorted(SPEC_ROWS, key=str)
    assert len(set(got)) == len(got)
    # a model's first row is its usual address (the one `app wrap` writes)
    first = {}
    for name, load, region, _ in got:
        if name:
            first.setdefault(name, (load, region))
    assert first == {m.name: (m.load_address, m.region_size) for m in SPEC_MODELS.values()}
    assert set(first) == {"M66", "MC60", "MC60E", "M26", "MC20"}
    assert all(m.source for m in fotabench.models())


def test_reference_header_field_offsets():
    """Guard the reference itself: the spec's named offsets hold what they should."""
    h = gfh_header(0x11223344, 0x55667788)
    assert len(h) == 64
    assert h[0:3] == b"MMM" and h[3] == 1
    assert struct.unpack_from("<HH", h, 4) == (0x40, 0)
    assert h[8:20] == b"FILE_INFO\0\0\0"
    assert struct.unpack_from("<H", h, 0x18)[0] == 0x7000
    assert h[0x1A] == 7 and h[0x1B] == 0
    assert struct.unpack_from("<I", h, 0x1C)[0] == 0x11223344
    assert struct.unpack_from("<I", h, 0x20)[0] == 0x55667788
    assert struct.unpack_from("<IIIII", h, 0x24) == (0xFFFFFFFF, 0x40, 0, 0x40, 3)
    assert h[0x38:] == bytes(8)


@pytest.mark.parametrize("model", MODEL_NAMES)
@pytest.mark.parametrize("length", [65, 4096, 0x1234567])
def test_header_function_matches_spec(model, length):
    load = SPEC_MODELS[model].load_address
    assert AppImage.header(load, length) == gfh_header(load, length)


# --- wrap ----------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODEL_NAMES)
@pytest.mark.parametrize("raw_size", [1, 3, 1000, 70001])
def test_wrap_every_model(model, raw_size, raw_bin, tmp_path):
    raw = raw_bin(raw_size)
    out = tmp_path / "APP.bin"
    img = AppImage.wrap(raw, out, model=model)
    spec = SPEC_MODELS[model]
    data = out.read_bytes()
    assert data == gfh_header(spec.load_address, raw_size + 64) + raw.read_bytes()
    assert img.path == out
    assert img.size == raw_size + 64
    assert img.file_length == raw_size + 64
    assert img.load_address == spec.load_address
    assert img.model == model
    assert img.ok and img.failures == ()
    assert check_names(img.checks) == APP_CHECKS
    assert raw.read_bytes() == raw_bytes(raw_size), "wrap must not touch its input"


def test_wrap_accepts_model_object_and_any_case(raw_bin, tmp_path):
    raw = raw_bin(100)
    m = [m for m in fotabench.models() if m.name == "MC60E"][0]
    a = AppImage.wrap(raw, tmp_path / "a.bin", model=m)
    b = AppImage.wrap(raw, tmp_path / "b.bin", model="mc60e")
    assert a.model == b.model == "MC60E"
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()


def test_wrap_overwrites_existing_output_on_success(raw_bin, tmp_path):
    out = tmp_path / "APP.bin"
    out.write_bytes(b"old content")
    raw = raw_bin(10)
    AppImage.wrap(raw, out, model="M26")
    assert out.read_bytes() == gfh_header(SPEC_MODELS["M26"].load_address, 74) + raw.read_bytes()
    assert listing(tmp_path) == sorted([raw.name, "APP.bin"])


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_wrap_exactly_region_accepted_one_more_refused(model, raw_bin, tmp_path):
    region = SPEC_MODELS[model].region_size
    fits = raw_bin(region - GFH_SIZE, name="fits.bin")
    img = AppImage.wrap(fits, tmp_path / "full.bin", model=model)
    assert img.size == region and img.ok
    assert (tmp_path / "full.bin").stat().st_size == region

    over = raw_bin(region - GFH_SIZE + 1, name="over.bin")
    before = listing(tmp_path)
    with pytest.raises(ModelError) as ei:
        AppImage.wrap(over, tmp_path / "over_app.bin", model=model)
    assert_fb_error(ei.value, ModelError, "FB_ERR_MODEL")
    assert model in ei.value.message and str(region) in ei.value.message
    assert listing(tmp_path) == before


def test_wrap_already_wrapped_refused(wrapped_app, tmp_path):
    app = wrapped_app("M66", 500)
    before = listing(tmp_path)
    with pytest.raises(ImageError) as ei:
        AppImage.wrap(app, tmp_path / "twice.bin", model="M66")
    assert_fb_error(ei.value, ImageError, "FB_ERR_IMAGE")
    assert "GFH" in ei.value.message
    assert listing(tmp_path) == before


def test_wrap_hand_made_image_refused_for_other_model_too(app_image, tmp_path):
    app = app_image("MC60", 64)
    with pytest.raises(ImageError):
        AppImage.wrap(app, tmp_path / "x.bin", model="M66")
    assert not (tmp_path / "x.bin").exists()


def test_wrap_empty_file_refused(tmp_path):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(ImageError) as ei:
        AppImage.wrap(empty, tmp_path / "out.bin", model="M66")
    assert_fb_error(ei.value, ImageError, "FB_ERR_IMAGE")
    assert "empty" in ei.value.message
    assert listing(tmp_path) == ["empty.bin"]


@pytest.mark.parametrize("model", [None, "auto", "AUTO"])
def test_wrap_without_model_refused(model, raw_bin, tmp_path):
    raw = raw_bin(100)
    with pytest.raises(ArgumentError) as ei:
        AppImage.wrap(raw, tmp_path / "out.bin", model=model)
    assert isinstance(ei.value, ValueError)
    assert "model" in str(ei.value)
    assert not (tmp_path / "out.bin").exists()


@pytest.mark.parametrize("model", [None, "auto"])
def test_wrap_without_model_error_attributes(model, raw_bin, tmp_path):
    with pytest.raises(ArgumentError) as ei:
        AppImage.wrap(raw_bin(100), tmp_path / "out.bin", model=model)
    assert_fb_error(ei.value, ArgumentError, "FB_ERR_ARG")


def test_wrap_unknown_model_refused(raw_bin, tmp_path):
    with pytest.raises(ArgumentError) as ei:
        AppImage.wrap(raw_bin(100), tmp_path / "out.bin", model="M95")
    assert_fb_error(ei.value, ArgumentError, "FB_ERR_ARG")
    assert isinstance(ei.value, ValueError)
    assert "M95" in ei.value.message
    assert not (tmp_path / "out.bin").exists()


def test_wrap_missing_input(tmp_path):
    with pytest.raises(FileError) as ei:
        AppImage.wrap(tmp_path / "nope.bin", tmp_path / "out.bin", model="M66")
    assert_fb_error(ei.value, FileError, "FB_ERR_IO")
    assert isinstance(ei.value, OSError)
    assert "nope.bin" in ei.value.message
    assert listing(tmp_path) == []


def test_wrap_failure_after_temp_file_leaves_nothing(raw_bin, tmp_path):
    """The output path is a directory: the temporary file is written, the final rename
    fails, and neither a temporary file nor a change to the directory remains."""
    raw = raw_bin(100, name="raw.bin")
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep").write_bytes(b"k")
    with pytest.raises(FileError) as ei:
        AppImage.wrap(raw, target, model="M66")
    assert_fb_error(ei.value, FileError, "FB_ERR_IO")
    assert listing(tmp_path) == ["raw.bin", "target"]
    assert listing(target) == ["keep"]


def test_wrap_failure_keeps_existing_output(tmp_path):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    out = tmp_path / "APP.bin"
    out.write_bytes(b"previous good image")
    with pytest.raises(ImageError):
        AppImage.wrap(empty, out, model="M66")
    assert out.read_bytes() == b"previous good image"
    assert listing(tmp_path) == ["APP.bin", "empty.bin"]


# --- open / inspect --------------------------------------------------------------------

@pytest.mark.parametrize("model", MODEL_NAMES)
def test_open_reference_image_auto_and_explicit(model, app_image):
    path = app_image(model, 2000)
    spec = SPEC_MODELS[model]
    candidates = spec_candidates(spec.load_address, 2064)
    for arg in ("auto", None, model, model.lower()):
        img = AppImage.open(path, model=arg)
        assert img.ok
        if arg in ("auto", None):
            # an address that names several models names none of them
            assert img.model == (model if len(candidates) == 1 else None)
            assert img.candidates == tuple(candidates)
        else:
            assert img.model == model
        assert img.load_address == spec.load_address
        assert img.file_length == img.size == 2064
        assert check_names(img.checks) == APP_CHECKS
    f = img.fields
    assert f["magic"] == "4d4d4d" and f["gfh_version"] == 1
    assert (f["gfh_size"], f["gfh_type"], f["id"]) == (0x40, 0, b"FILE_INFO")
    assert (f["file_ver"], f["file_type"], f["flash_dev"], f["sig_type"]) == (1, 0x7000, 7, 0)
    assert (f["max_size"], f["content_offset"], f["sig_len"], f["jump_offset"], f["attr"]) == \
        (0xFFFFFFFF, 0x40, 0, 0x40, 3)


def _write(tmp_path, data: bytes, name="img.bin"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _good(model="M66", raw_size=1000) -> bytes:
    return app_bytes(model, raw_size)


def _replace(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new):]


# (id, image bytes, failing check, exception class, code name)
L = 1064  # len(_good())
DAMAGED = [
    ("magic", _replace(_good(), 0, b"MMX"), "magic", ImageError, "FB_ERR_IMAGE"),
    ("magic_zero", _replace(_good(), 0, b"\0\0\0"), "magic", ImageError, "FB_ERR_IMAGE"),
    ("gfh_version", _replace(_good(), 3, b"\x02"), "magic", ImageError, "FB_ERR_IMAGE"),
    ("header_size", _replace(_good(), 4, struct.pack("<H", 0x80)), "header_size",
     ImageError, "FB_ERR_IMAGE"),
    ("header_type", _replace(_good(), 6, struct.pack("<H", 1)), "header_size",
     ImageError, "FB_ERR_IMAGE"),
    ("id", _replace(_good(), 8, b"FILE_INFX"), "id", ImageError, "FB_ERR_IMAGE"),
    ("id_padding", _replace(_good(), 17, b"X"), "id", ImageError, "FB_ERR_IMAGE"),
    ("length_short", _replace(_good(), 0x20, struct.pack("<I", L - 1)), "length",
     ImageError, "FB_ERR_IMAGE"),
    ("length_long", _replace(_good(), 0x20, struct.pack("<I", L + 1)), "length",
     ImageError, "FB_ERR_IMAGE"),
    ("file_truncated", _good()[:-1], "length", ImageError, "FB_ERR_IMAGE"),
    ("file_extended", _good() + b"\0", "length", ImageError, "FB_ERR_IMAGE"),
    ("length_zero", _replace(_good(), 0x20, struct.pack("<I", 0)), "length",
     ImageError, "FB_ERR_IMAGE"),
    ("unknown_load", _replace(_good(), 0x1C, struct.pack("<I", 0x10000000)), "load_address",
     ModelError, "FB_ERR_MODEL"),
]


@pytest.mark.parametrize("name,data,check,cls,code_name", DAMAGED, ids=[d[0] for d in DAMAGED])
def test_damaged_image(name, data, check, cls, code_name, tmp_path):
    path = _write(tmp_path, data)
    with pytest.raises(cls) as ei:
        AppImage.open(path)
    assert_fb_error(ei.value, cls, code_name)
    assert ei.value.message.startswith(f"app image {check}:")

    img = AppImage.inspect(path)  # never raises on a failed check
    assert not img.ok
    assert failed_names(img.checks) == [check]
    assert [c.name for c in img.failures] == [check]
    names = check_names(img.checks)
    assert names[:6] == APP_CHECKS[:6], "inspect runs every check, not only up to the failure"
    failed = img.failures[0]
    assert failed.code == code_name and failed.detail
    assert img.size == len(data)


@pytest.mark.parametrize("size", [0, 1, 12, 63])
def test_truncated_image(size, tmp_path):
    path = _write(tmp_path, _good()[:size])
    with pytest.raises(ImageError) as ei:
        AppImage.open(path)
    assert_fb_error(ei.value, ImageError, "FB_ERR_IMAGE")
    assert "truncated" in ei.value.message
    img = AppImage.inspect(path)
    assert not img.ok
    assert check_names(img.checks) == ["size"]
    assert failed_names(img.checks) == ["size"]
    assert img.size == size


def test_exactly_64_bytes_header_only_image_accepted(tmp_path):
    path = _write(tmp_path, gfh_header(SPEC_MODELS["M66"].load_address, 64))
    img = AppImage.open(path)
    assert img.ok and img.size == 64 and img.model == "M66"


def test_several_failures_all_reported(tmp_path):
    data = _replace(_good(), 0, b"XYZ\x01")
    data = _replace(data, 8, b"NOT_INFO\0\0\0\0")
    data = _replace(data, 0x20, struct.pack("<I", 5))
    img = AppImage.inspect(_write(tmp_path, data))
    assert failed_names(img.checks) == ["magic", "id", "length"]


@pytest.mark.parametrize("image_model", MODEL_NAMES)
@pytest.mark.parametrize("asked", MODEL_NAMES)
def test_load_address_of_another_model(image_model, asked, app_image):
    path = app_image(image_model, 300)
    load = SPEC_MODELS[image_model].load_address
    if asked in spec_candidates(load):  # the same model, or one sharing the address
        img = AppImage.open(path, model=asked)
        assert img.ok and img.model == asked
        return
    with pytest.raises(ModelError) as ei:
        AppImage.open(path, model=asked)
    assert_fb_error(ei.value, ModelError, "FB_ERR_MODEL")
    msg = ei.value.message
    assert msg.startswith("app image load_address:")
    assert f"an app address of {' or '.join(spec_candidates(load))}, not of {asked}" in msg
    assert f"0x{load:08X}" in msg
    for row in SPEC_ROWS:  # every address of the model asked for
        if row.name == asked:
            assert f"0x{row.load_address:08X}" in msg
    img = AppImage.inspect(path, model=asked)
    assert failed_names(img.checks) == ["load_address"]
    assert img.model == asked


@pytest.mark.parametrize("load", NBIOT_ADDRESSES + [0x08001000])
def test_nbiot_address_refused(load, tmp_path):
    """§6: 0x08xxxxxx is MT2625 NB-IoT (BC26, BC20), not OpenCPU FOTA of this kind."""
    path = _write(tmp_path, _replace(_good(), 0x1C, struct.pack("<I", load)))
    for model in ("auto", "M66"):
        with pytest.raises(UnsupportedError) as ei:
            AppImage.open(path, model=model)
        assert_fb_error(ei.value, UnsupportedError, "FB_ERR_UNSUPPORTED")
        assert f"0x{load:08X}" in ei.value.message
        assert "MT2625" in ei.value.message and "BC26" in ei.value.message
        img = AppImage.inspect(path, model=model)
        assert failed_names(img.checks) == ["load_address"]
        assert img.model == (None if model == "auto" else model)
        assert check_names(img.checks) == APP_CHECKS[:6]


def test_unknown_opencpu_address_names_the_platform(tmp_path):
    """An unknown 0x10xxxxxx address: auto names the platform and asks for the model
    instead of guessing; a named model is taken on the user's word, with a warning."""
    load = 0x10300000
    assert not spec_candidates(load)
    path = _write(tmp_path, _replace(_good(), 0x1C, struct.pack("<I", load)))
    with pytest.raises(ModelError) as ei:
        AppImage.open(path, model="auto")
    assert_fb_error(ei.value, ModelError, "FB_ERR_MODEL")
    msg = ei.value.message
    assert "0x10300000" in msg and "MT6261/MT2503 OpenCPU app area" in msg
    assert "name the model" in msg
    img = AppImage.inspect(path)
    assert img.model is None and img.candidates == ()
    assert img.fields["platform"] == "MediaTek MT6261/MT2503 OpenCPU app area"
    assert check_names(img.checks) == APP_CHECKS[:6]

    img = AppImage.open(path, model="M26")
    assert img.ok and img.model == "M26"
    assert [(c.name, c.level) for c in img.warnings] == [("load_address", "warning")]
    detail = img.warnings[0].detail
    assert "0x1021B000" in detail and "0x10270000" in detail and "your word" in detail
    # the named model's usual region still bounds the image
    big = SPEC_MODELS["M26"].region_size + 4
    path = _write(tmp_path, gfh_header(load, big) + raw_bytes(big - 64), "big.bin")
    img = AppImage.inspect(path, model="M26")
    assert failed_names(img.checks) == ["region"]


def test_address_outside_any_app_area(tmp_path):
    path = _write(tmp_path, _replace(_good(), 0x1C, struct.pack("<I", 0x20001000)))
    for model in ("auto", "MC60"):
        with pytest.raises(ModelError) as ei:
            AppImage.open(path, model=model)
        assert "0x20001000" in ei.value.message and "0x10xxxxxx" in ei.value.message
    with pytest.raises(ModelError) as ei:
        AppImage.open(path, model="MC60")
    assert "0x102DB000" in ei.value.message


@pytest.mark.parametrize("row", [r for r in SPEC_ROWS if r.evidence == "seen-once"],
                         ids=lambda r: f"{r.name}@0x{r.load_address:08X}")
def test_seen_once_addresses_warn(row, tmp_path):
    path = _write(tmp_path, gfh_header(row.load_address, 1064) + raw_bytes(1000))
    img = AppImage.open(path)
    assert img.ok
    assert img.candidates == tuple(spec_candidates(row.load_address, 1064))
    levels = {c.name: c.level for c in img.checks}
    if len(img.candidates) > 1:  # 0x1030D000: MC60E (linker scripts) and MC20 (once)
        assert img.model is None and img.warnings == ()
        img = AppImage.open(path, model=row.name)
        levels = {c.name: c.level for c in img.checks}
    assert levels["load_address"] == "warning"
    assert "seen in" in {c.name: c.detail for c in img.checks}["load_address"]
    assert levels.get("region", "warning") == ("warning" if not row.region_size else "ok")


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_image_larger_than_region(model, tmp_path):
    spec = SPEC_MODELS[model]
    exact = gfh_header(spec.load_address, spec.region_size) + raw_bytes(spec.region_size - 64)
    ok = AppImage.open(_write(tmp_path, exact, "exact.bin"), model=model)
    assert ok.ok and ok.size == spec.region_size

    big = spec.region_size + 1
    over = gfh_header(spec.load_address, big) + raw_bytes(big - 64)
    path = _write(tmp_path, over, "over.bin")
    for arg in ("auto", model):
        with pytest.raises(ModelError) as ei:
            AppImage.open(path, model=arg)
        assert_fb_error(ei.value, ModelError, "FB_ERR_MODEL")
        assert ei.value.message.startswith("app image region:")
        assert str(spec.region_size) in ei.value.message and model in ei.value.message
        img = AppImage.inspect(path, model=arg)
        assert failed_names(img.checks) == ["region"]


def test_unknown_model_name_open_and_inspect(app_image):
    path = app_image("M66", 10)
    for fn in (AppImage.open, AppImage.inspect):
        with pytest.raises(ArgumentError) as ei:
            fn(path, model="M67")
        assert_fb_error(ei.value, ArgumentError, "FB_ERR_ARG")
        assert "M67" in ei.value.message


@pytest.mark.parametrize("fn", [AppImage.open, AppImage.inspect])
def test_missing_file_and_directory(fn, tmp_path):
    with pytest.raises(FileError) as ei:
        fn(tmp_path / "missing.bin")
    assert_fb_error(ei.value, FileError, "FB_ERR_IO")
    assert isinstance(ei.value, OSError)
    assert "missing.bin" in ei.value.message

    with pytest.raises(FileError) as ei:
        fn(tmp_path)
    assert_fb_error(ei.value, FileError, "FB_ERR_IO")
    assert "not a regular file" in ei.value.message


def test_to_dict(app_image):
    img = AppImage.inspect(app_image("M26", 10))
    d = img.to_dict()
    assert d["ok"] is True and d["path"] == str(img.path)
    assert d["fields"]["load_address"] == SPEC_MODELS["M26"].load_address
    assert [c["name"] for c in d["checks"]] == APP_CHECKS
    assert all(set(c) == {"name", "ok", "code", "detail", "level"} for c in d["checks"])
    assert {c["level"] for c in d["checks"]} == {"ok"}
