"""FOTA packages (spec §5): byte-level layout, build failures, damaged packages."""
from __future__ import annotations

import hashlib
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from fotabench import (AppImage, ArgumentError, ChecksumError, FileError, FotabenchError,
                       ImageError, ModelError, Package, PackageError, Special,
                       UnsupportedError, _core)

from conftest import (APP_CHECKS, MODEL_NAMES, PACKAGE_HEADER_CHECKS, PKG_MAGIC, SPEC_MODELS, spec_candidates,
                      app_bytes, assert_fb_error, check_names, crc16_xmodem, failed_names,
                      gfh_header, listing, package_bytes, package_header, pad4)

GOOD_PACKAGE_CHECKS = PACKAGE_HEADER_CHECKS + ["md5"] + ["app." + c for c in APP_CHECKS]
SPECIALS = {"none": 0, "clear-nvram": 1, "format-fs": 2}


# --- the references themselves ---------------------------------------------------------

def test_reference_crc16_check_value():
    # The catalogued check value of CRC-16/XMODEM.
    assert crc16_xmodem(b"123456789") == 0x31C3
    assert crc16_xmodem(b"") == 0


@pytest.mark.parametrize("n", [0, 1, 2, 75, 76, 300])
def test_core_crc16_matches_reference(n):
    data = bytes((i * 37 + 11) & 0xFF for i in range(n))
    assert _core.crc16_xmodem(data) == crc16_xmodem(data)
    # chaining: crc of a + b == crc of b started from crc of a
    assert _core.crc16_xmodem(data[n // 2:], _core.crc16_xmodem(data[:n // 2])) == \
        crc16_xmodem(data)


# --- build: byte-level layout -----------------------------------------------------------

def parse_layout(data: bytes, app_len: int) -> dict:
    """Take a package apart with struct, per spec §5."""
    magic = data[0:20]
    image_type, checksum_type = struct.unpack_from("<HH", data, 20)
    special, payload_length, digest_length = struct.unpack_from("<III", data, 24)
    reserved = data[36:76]
    (crc_field,) = struct.unpack_from("<I", data, 76)
    app = data[80:80 + app_len]
    padding = data[80 + app_len:80 + payload_length]
    trailer = data[80 + payload_length:]
    return dict(magic=magic, image_type=image_type, checksum_type=checksum_type,
                special=special, payload_length=payload_length, digest_length=digest_length,
                reserved=reserved, crc_field=crc_field, app=app, padding=padding,
                trailer=trailer)


@pytest.mark.parametrize("raw_size", [1000, 1001, 1002, 1003, 4, 5])
@pytest.mark.parametrize("special", list(SPECIALS))
def test_build_layout(raw_size, special, app_image, tmp_path):
    app_path = app_image("M66", raw_size)
    app = app_path.read_bytes()
    out = tmp_path / "APP_Upgrade_Package.bin"
    pkg = Package.build(app_path, out, special=special)
    data = out.read_bytes()

    f = parse_layout(data, len(app))
    payload = pad4(len(app))
    assert f["magic"] == b"QUECTEL_FOTA_UPGRADE"
    assert f["image_type"] == 0
    assert f["checksum_type"] == 1  # what Quectel's GS3 tool writes (spec §5)
    assert f["special"] == SPECIALS[special]
    assert f["payload_length"] == payload and payload % 4 == 0
    assert payload - len(app) == (-len(app)) % 4
    assert f["digest_length"] == 16
    assert f["reserved"] == b"\xff" * 40
    assert f["crc_field"] == crc16_xmodem(data[:76])
    assert f["crc_field"] <= 0xFFFF
    assert f["app"] == app
    assert f["padding"] == b"\xff" * (payload - len(app))
    assert f["trailer"] == hashlib.md5(data[:-16]).digest()
    assert len(data) == 80 + payload + 16

    # ... and it is exactly what the independent reference builds.
    assert data == package_bytes(app, special=SPECIALS[special])

    assert pkg.ok and pkg.failures == ()
    assert pkg.path == out
    assert pkg.size == len(data)
    assert pkg.payload_length == payload
    assert pkg.special == Special(SPECIALS[special])
    assert pkg.md5 == hashlib.md5(data[:-16]).hexdigest()
    assert pkg.model == "M66"
    assert pkg.app["file_length"] == len(app)
    assert check_names(pkg.checks) == GOOD_PACKAGE_CHECKS + (
        ["padding"] if payload != len(app) else [])
    assert app_path.read_bytes() == app, "build must not touch its input"


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_build_every_model_auto_and_explicit(model, app_image, tmp_path):
    app_path = app_image(model, 777)
    a = Package.build(app_path, tmp_path / "a.bin")
    b = Package.build(app_path, tmp_path / "b.bin", model=model)
    candidates = spec_candidates(SPEC_MODELS[model].load_address, 777 + 64)
    assert a.candidates == tuple(candidates)
    assert a.model == (model if len(candidates) == 1 else None)
    assert b.model == model
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes() == \
        package_bytes(app_path.read_bytes())
    assert Package.open(tmp_path / "a.bin", model=model).ok


def test_build_from_wrapped_app(wrapped_app, tmp_path):
    app = wrapped_app("MC60", 12345)
    pkg = Package.build(app, tmp_path / "p.bin", special=Special.FORMAT_FS)
    assert (tmp_path / "p.bin").read_bytes() == package_bytes(app.read_bytes(), special=2)
    assert pkg.special is Special.FORMAT_FS


def test_build_region_sized_app(tmp_path):
    spec = SPEC_MODELS["MC60E"]
    app_path = tmp_path / "full.bin"
    app_path.write_bytes(app_bytes("MC60E", spec.region_size - 64))
    pkg = Package.build(app_path, tmp_path / "p.bin")
    assert pkg.payload_length == spec.region_size
    assert (tmp_path / "p.bin").read_bytes() == package_bytes(app_path.read_bytes())


def test_special_int_and_enum_accepted(app_image, tmp_path):
    app = app_image("M66", 8)
    for i, value in enumerate([1, Special.CLEAR_NVRAM, "CLEAR-NVRAM"]):
        pkg = Package.build(app, tmp_path / f"p{i}.bin", special=value)
        assert pkg.special == Special.CLEAR_NVRAM
        assert struct.unpack_from("<I", (tmp_path / f"p{i}.bin").read_bytes(), 24)[0] == 1


def test_verify_sees_later_damage(built_package):
    path = built_package()
    pkg = Package.open(path)
    assert pkg.verify().ok
    data = bytearray(path.read_bytes())
    data[200] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError):
        pkg.verify()


# --- build failures ----------------------------------------------------------------------

def test_core_image_type_refused(app_image, tmp_path):
    app = app_image("M66", 100)
    before = listing(tmp_path)
    out = tmp_path / "core.bin"
    with pytest.raises(UnsupportedError) as ei:
        Package.build(app, out, image_type="core")
    assert_fb_error(ei.value, UnsupportedError, "FB_ERR_UNSUPPORTED")
    assert "App" in ei.value.message and "Core" in ei.value.message
    assert not out.exists()
    assert listing(tmp_path) == before


def test_core_image_type_keeps_existing_output(app_image, tmp_path):
    app = app_image("M66", 100)
    out = tmp_path / "pkg.bin"
    out.write_bytes(b"the package on the server")
    with pytest.raises(UnsupportedError):
        Package.build(app, out, image_type="core")
    assert out.read_bytes() == b"the package on the server"


def test_unknown_image_type_and_special(app_image, tmp_path):
    app = app_image("M66", 100)
    before = listing(tmp_path)
    with pytest.raises(ArgumentError):
        Package.build(app, tmp_path / "x.bin", image_type="firmware")
    with pytest.raises(ArgumentError):
        Package.build(app, tmp_path / "x.bin", special="wipe")
    with pytest.raises(ArgumentError) as ei:
        Package.build(app, tmp_path / "x.bin", special=4)
    assert_fb_error(ei.value, ArgumentError, "FB_ERR_ARG")
    assert "0x4" in ei.value.message
    assert listing(tmp_path) == before


def test_python_layer_argument_errors_carry_code(app_image, tmp_path):
    app = app_image("M66", 100)
    for kwargs in ({"image_type": "firmware"}, {"special": "wipe"}):
        with pytest.raises(ArgumentError) as ei:
            Package.build(app, tmp_path / "x.bin", **kwargs)
        assert_fb_error(ei.value, ArgumentError, "FB_ERR_ARG")


def _make_failure(kind: str, tmp_path: Path, app_image) -> tuple[Path, Path, dict, type, str]:
    """Inputs for a build that must fail: (app, out, kwargs, error class, code name)."""
    out = tmp_path / "pkg.bin"
    if kind == "raw_input":
        app = tmp_path / "raw.bin"
        app.write_bytes(b"\x00" * 500)
        return app, out, {}, ImageError, "FB_ERR_IMAGE"
    if kind == "truncated_input":
        app = tmp_path / "short.bin"
        app.write_bytes(app_bytes("M66", 100)[:-3])
        return app, out, {}, ImageError, "FB_ERR_IMAGE"
    if kind == "wrong_model":
        return app_image("M66", 100), out, {"model": "MC60"}, ModelError, "FB_ERR_MODEL"
    if kind == "missing_input":
        return tmp_path / "missing.bin", out, {}, FileError, "FB_ERR_IO"
    if kind == "core":
        return app_image("M66", 100), out, {"image_type": "core"}, UnsupportedError, \
            "FB_ERR_UNSUPPORTED"
    if kind == "output_is_directory":
        # fails only at the final rename, after the temporary file was written
        out = tmp_path / "pkgdir"
        out.mkdir()
        (out / "inside").write_bytes(b"x")
        return app_image("M66", 100), out, {}, FileError, "FB_ERR_IO"
    if kind == "output_dir_missing":
        return app_image("M66", 100), tmp_path / "no" / "pkg.bin", {}, FileError, "FB_ERR_IO"
    raise AssertionError(kind)


FAILURES = ["raw_input", "truncated_input", "wrong_model", "missing_input", "core",
            "output_is_directory", "output_dir_missing"]


@pytest.mark.parametrize("kind", FAILURES)
def test_failed_build_leaves_nothing(kind, tmp_path, app_image):
    app, out, kwargs, cls, code_name = _make_failure(kind, tmp_path, app_image)
    before = listing(tmp_path)
    with pytest.raises(cls) as ei:
        Package.build(app, out, **kwargs)
    assert_fb_error(ei.value, cls, code_name)
    assert listing(tmp_path) == before, "no output and no temporary file may remain"
    if out.is_dir():
        assert listing(out) == ["inside"]


@pytest.mark.parametrize("kind", [k for k in FAILURES
                                  if k not in ("output_is_directory", "output_dir_missing")])
def test_failed_build_never_clobbers_existing_output(kind, tmp_path, app_image):
    app, out, kwargs, cls, _ = _make_failure(kind, tmp_path, app_image)
    out.write_bytes(b"previous package")
    before = listing(tmp_path)
    with pytest.raises(cls):
        Package.build(app, out, **kwargs)
    assert out.read_bytes() == b"previous package"
    assert listing(tmp_path) == before


# --- damaged packages ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_packages():
    """Reference packages for app lengths = 0, 1, 2, 3 mod 4."""
    return {n: package_bytes(app_bytes("M66", n)) for n in (100, 101, 102, 103)}


def inspect_bytes(data: bytes, model=None):
    fields, checks = _core.package_inspect_bytes(data, model)
    return fields, checks


def test_reference_package_accepted(good_packages):
    for data in good_packages.values():
        fields, checks = inspect_bytes(data)
        assert failed_names(checks) == []
        assert fields["md5"] == hashlib.md5(data[:-16]).hexdigest()
        assert fields["header_crc"] == fields["header_crc_computed"] == crc16_xmodem(data[:76])
        assert fields["magic"] == PKG_MAGIC
        assert fields["app"]["model"] == "M66"


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_every_header_byte_flip_detected(mask, good_packages):
    for app_len, data in good_packages.items():
        for i in range(80):
            damaged = bytearray(data)
            damaged[i] ^= mask
            _, checks = inspect_bytes(bytes(damaged))
            failed = failed_names(checks)
            assert "header_crc" in failed, (app_len, i)
            assert set(failed) & set(PACKAGE_HEADER_CHECKS), (app_len, i)
            assert "md5" in failed, (app_len, i)
            with pytest.raises((ChecksumError, PackageError)):
                _core.package_inspect_bytes(bytes(damaged), None, True)


def test_header_flip_through_files(built_package):
    path = built_package("M66", 200)
    good = path.read_bytes()
    for i in (0, 19, 20, 22, 24, 28, 32, 36, 75, 76, 78, 79):
        damaged = bytearray(good)
        damaged[i] ^= 0x04
        path.write_bytes(bytes(damaged))
        pkg = Package.inspect(path)
        assert not pkg.ok
        assert "header_crc" in failed_names(pkg.checks)
        with pytest.raises((ChecksumError, PackageError)) as ei:
            Package.open(path)
        expected = PackageError if i < 20 else ChecksumError  # magic is checked first
        assert type(ei.value) is expected, i


def test_every_payload_and_trailer_flip_detected(good_packages):
    for app_len, data in good_packages.items():
        for i in range(80, len(data)):
            damaged = bytearray(data)
            damaged[i] ^= 0x20
            _, checks = inspect_bytes(bytes(damaged))
            assert "md5" in failed_names(checks), (app_len, i)
            with pytest.raises(ChecksumError):
                _core.package_inspect_bytes(bytes(damaged), None, True)


@pytest.mark.parametrize("offset", [80, 80 + 0x1C, 80 + 0x20, 80 + 64, 80 + 150, -20, -1])
def test_payload_flip_via_open_and_inspect(offset, built_package):
    path = built_package("M26", 203)  # app 267 bytes: 1 byte of padding at -17
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as ei:
        Package.open(path)
    assert_fb_error(ei.value, ChecksumError, "FB_ERR_CHECKSUM")
    assert ei.value.message.startswith("package md5:")
    pkg = Package.inspect(path)
    assert "md5" in [c.name for c in pkg.failures]
    md5_check = [c for c in pkg.checks if c.name == "md5"][0]
    assert md5_check.code == "FB_ERR_CHECKSUM"
    assert hashlib.md5(bytes(data[:-16])).hexdigest() in md5_check.detail


def test_padding_flip_reported(good_packages):
    data = bytearray(good_packages[101])  # app 165 bytes, 3 bytes of padding
    data[80 + 165] = 0x00
    _, checks = inspect_bytes(bytes(data))
    assert set(failed_names(checks)) == {"md5", "padding"}


def test_truncations_fail_cleanly(good_packages):
    for data in good_packages.values():
        for n in range(len(data)):
            fields, checks = inspect_bytes(data[:n])
            failed = failed_names(checks)
            assert failed, n
            if n < 96:
                assert check_names(checks) == ["size"] and failed == ["size"]
                assert fields["header_valid"] is False and fields["md5"] is None
                assert fields["app"] is None
            else:
                assert "payload_length" in failed
            with pytest.raises(PackageError):
                _core.package_inspect_bytes(data[:n], None, True)


@pytest.mark.parametrize("n", [0, 1, 79, 80, 95, 96, 97, 150, -17, -16, -1])
def test_truncated_file(n, built_package):
    path = built_package("M66", 100)
    data = path.read_bytes()
    path.write_bytes(data[:n])
    with pytest.raises(PackageError) as ei:
        Package.open(path)
    assert_fb_error(ei.value, PackageError, "FB_ERR_PACKAGE")
    pkg = Package.inspect(path)
    assert not pkg.ok and pkg.size == len(data[:n])


@pytest.mark.parametrize("extra", [b"\x00", b"\xff" * 3, b"\xff" * 4, b"garbage!" * 10])
def test_trailing_garbage(extra, good_packages, built_package):
    _, checks = inspect_bytes(good_packages[100] + extra)
    assert "payload_length" in failed_names(checks)
    path = built_package("M66", 100)
    path.write_bytes(path.read_bytes() + extra)
    with pytest.raises(PackageError) as ei:
        Package.open(path)
    assert ei.value.message.startswith("package payload_length:")


@pytest.mark.parametrize("asked", ["MC60", "MC60E", "M26"])
def test_package_opened_for_another_model(asked, built_package):
    path = built_package("M66", 300)
    with pytest.raises(ModelError) as ei:
        Package.open(path, model=asked)
    assert_fb_error(ei.value, ModelError, "FB_ERR_MODEL")
    assert "M66" in ei.value.message and asked in ei.value.message
    pkg = Package.inspect(path, model=asked)
    assert failed_names(pkg.checks) == ["app.load_address"]
    assert Package.open(path, model="M66").ok
    assert Package.open(path, model="auto").model == "M66"


@pytest.mark.parametrize("image_type,label", [(1, "Core"), (2, "Core delta")])
def test_core_image_type_in_hand_made_package(image_type, label, tmp_path):
    data = package_bytes(app_bytes("M66", 100), image_type=image_type)
    _, checks = inspect_bytes(data)
    assert failed_names(checks) == ["image_type"], "CRC and MD5 are right: only the type fails"
    with pytest.raises(UnsupportedError) as ei:
        _core.package_inspect_bytes(data, None, True)
    assert_fb_error(ei.value, UnsupportedError, "FB_ERR_UNSUPPORTED")
    path = tmp_path / "core.bin"
    path.write_bytes(data)
    with pytest.raises(UnsupportedError) as ei:
        Package.open(path)
    assert_fb_error(ei.value, UnsupportedError, "FB_ERR_UNSUPPORTED")
    assert label in ei.value.message
    assert Package.inspect(path).fields["image_type"] == image_type


# Hand-made packages with a correct CRC and MD5 but one field wrong.
HAND_MADE = [
    ("magic", dict(magic=b"QUECTEL_FOTA_UPGRADX"), "magic", PackageError),
    ("checksum_type", dict(checksum_type=2), "checksum_type", PackageError),
    ("checksum_type_ffff", dict(checksum_type=0xFFFF), "checksum_type", PackageError),
    ("special_bit2", dict(special=4), "special", PackageError),
    ("digest_length", dict(digest_length=20), "digest_length", PackageError),
    ("reserved", dict(reserved=b"\xff" * 39 + b"\x00"), "reserved", PackageError),
    # the right CRC in the low half, but the u32 field's high half not zero
    ("crc_high_half", dict(crc=crc16_xmodem(package_header(pad4(164))[:76]) | 0x10000),
     "header_crc", ChecksumError),
]


@pytest.mark.parametrize("name,header,check,cls", HAND_MADE, ids=[h[0] for h in HAND_MADE])
def test_hand_made_field_errors(name, header, check, cls):
    app = app_bytes("M66", 100)  # 164 bytes
    data = package_bytes(app, **header)
    _, checks = inspect_bytes(data)
    assert failed_names(checks) == [check]
    with pytest.raises(cls) as ei:
        _core.package_inspect_bytes(data, None, True)
    assert ei.value.message.startswith(f"package {check}:")


def test_checksum_type_zero_is_a_warning(tmp_path):
    """§5: 1 in every real GS3 package; 0 (the GS2 reading) passes with a warning."""
    data = package_bytes(app_bytes("M66", 100), checksum_type=0)
    fields, checks = inspect_bytes(data)
    assert failed_names(checks) == [] and fields["checksum_type"] == 0
    assert [(c[0], c[4]) for c in checks if c[4] != "ok"] == [("checksum_type", "warning")]
    path = tmp_path / "gs2.bin"
    path.write_bytes(data)
    pkg = Package.open(path)  # does not raise
    assert pkg.ok and [c.name for c in pkg.warnings] == ["checksum_type"]
    assert pkg.warnings[0].ok and pkg.warnings[0].code == "FB_OK"
    assert "GS3" in pkg.warnings[0].detail
    fields, checks = inspect_bytes(package_bytes(app_bytes("M66", 100)))
    assert {c[4] for c in checks} == {"ok"}


def test_both_special_bits_accepted():
    data = package_bytes(app_bytes("M66", 100), special=3)
    fields, checks = inspect_bytes(data)
    assert failed_names(checks) == [] and fields["special"] == 3


def test_payload_length_not_multiple_of_four():
    app = app_bytes("M66", 101)  # 165 bytes
    body = package_header(len(app)) + app
    data = body + hashlib.md5(body).digest()
    _, checks = inspect_bytes(data)
    assert "payload_length" in failed_names(checks)


def test_inspect_bytes_accepts_buffers(good_packages):
    data = good_packages[102]
    for buf in (bytearray(data), memoryview(data)):
        _, checks = _core.package_inspect_bytes(buf)
        assert failed_names(checks) == []


def test_inspect_missing_and_directory(tmp_path):
    for fn in (Package.open, Package.inspect):
        with pytest.raises(FileError) as ei:
            fn(tmp_path / "nope.bin")
        assert_fb_error(ei.value, FileError, "FB_ERR_IO")
        with pytest.raises(FileError):
            fn(tmp_path)


def test_package_to_dict(built_package):
    pkg = Package.inspect(built_package("MC60", 33, special="clear-nvram"))
    d = pkg.to_dict()
    assert d["ok"] is True
    assert d["fields"]["special"] == 1
    assert d["fields"]["app"]["model"] is None  # 0x102DB000: MC60 or MC20
    assert d["fields"]["app"]["candidates"] == ("MC60", "MC20")
    assert Package.inspect(pkg.path, model="MC60").to_dict()["fields"]["app"]["model"] == "MC60"
    assert [c["name"] for c in d["checks"]] == check_names(pkg.checks)


# --- property tests ---------------------------------------------------------------------

@given(raw=st.binary(min_size=1, max_size=4096),
       model=st.sampled_from(MODEL_NAMES),
       special=st.sampled_from(list(SPECIALS)),
       explicit=st.booleans())
def test_roundtrip_wrap_build_open(raw, model, special, explicit):
    assume(not (len(raw) >= 12 and raw[:3] == b"MMM" and raw[8:12] == b"FILE"))
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "raw.bin").write_bytes(raw)
        AppImage.wrap(d / "raw.bin", d / "APP.bin", model=model)
        pkg = Package.build(d / "APP.bin", d / "pkg.bin", model=model if explicit else "auto",
                            special=special)
        opened = Package.open(d / "pkg.bin", model=model)
        data = (d / "pkg.bin").read_bytes()
        assert sorted(p.name for p in d.iterdir()) == ["APP.bin", "pkg.bin", "raw.bin"]
    app_len = len(raw) + 64
    # recover the app bytes from the package file by the spec's layout alone
    (payload_length,) = struct.unpack_from("<I", data, 28)
    app = data[80:80 + app_len]
    assert app[64:] == raw
    assert app[:64] == gfh_header(SPEC_MODELS[model].load_address, app_len)
    assert payload_length == pad4(app_len)
    assert data[80 + app_len:80 + payload_length] == b"\xff" * (payload_length - app_len)
    assert data[-16:] == hashlib.md5(data[:-16]).digest()
    assert struct.unpack_from("<I", data, 24)[0] == SPECIALS[special]
    assert opened.ok and opened.model == model
    several = len(spec_candidates(SPEC_MODELS[model].load_address)) > 1
    assert pkg.model == (None if several and not explicit else model)
    assert opened.md5 == pkg.md5 == data[-16:].hex()


@given(st.binary(max_size=600))
def test_inspect_bytes_never_crashes_on_arbitrary_bytes(data):
    try:
        fields, checks = _core.package_inspect_bytes(data)
    except FotabenchError:
        return
    assert isinstance(fields, dict) and isinstance(checks, tuple)
    # arbitrary bytes are essentially never a valid package
    if not data.startswith(PKG_MAGIC):
        assert "magic" in failed_names(checks) or failed_names(checks) == ["size"]


@st.composite
def plausible_packages(draw):
    """Packages with a valid magic, CRC and MD5 around fuzzed fields and payload, so the
    checks behind the header (app image, padding) get exercised too. Each perturbation
    is optional, so valid packages are drawn as well."""
    model = draw(st.sampled_from(MODEL_NAMES))
    raw = draw(st.binary(max_size=300))
    app = bytearray(app_bytes(model, len(raw)))
    app[64:] = raw
    if draw(st.booleans()):  # fuzz some app header bytes
        for _ in range(draw(st.integers(1, 3))):
            app[draw(st.integers(0, 63))] = draw(st.integers(0, 255))
    if draw(st.booleans()):  # cut the app short
        app = app[:draw(st.integers(0, len(app)))]
    header = {}
    if draw(st.booleans()):
        header = dict(
            image_type=draw(st.sampled_from([0, 1, 2, 0xFFFF])),
            checksum_type=draw(st.sampled_from([0, 1, 2])),
            special=draw(st.sampled_from([0, 1, 2, 3, 8, 0xFFFFFFFF])),
            digest_length=draw(st.sampled_from([16, 0, 0xFFFFFFFF])),
        )
    payload = None
    if draw(st.booleans()):
        payload = draw(st.one_of(st.integers(0, 0xFFFFFFFF), st.integers(0, len(app) + 8)))
    pad_byte = draw(st.sampled_from([0xFF, 0xFF, 0]))
    return package_bytes(bytes(app), payload_length=payload, pad_byte=pad_byte, **header)


@given(plausible_packages(), st.sampled_from([None, "M66", "MC60"]))
def test_inspect_bytes_never_crashes_on_plausible_packages(data, model):
    try:
        fields, checks = _core.package_inspect_bytes(data, model)
    except FotabenchError:
        return
    names = check_names(checks)
    assert names[:len(PACKAGE_HEADER_CHECKS)] == PACKAGE_HEADER_CHECKS
    assert "header_crc" not in failed_names(checks)
    assert "md5" not in failed_names(checks)
    ok = not failed_names(checks)
    if ok:
        # a package that passes must really be one: re-check by the spec
        assert fields["image_type"] == 0 and fields["payload_length"] % 4 == 0
        assert fields["checksum_type"] in (0, 1)
        assert len(data) == 80 + fields["payload_length"] + 16
        assert fields["app"]["file_length"] <= fields["payload_length"]
