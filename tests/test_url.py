"""Module URLs (spec §3): the module's own HTTP and FTP rules, builders and parser."""
from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from fotabench import ModuleUrl, UrlError
from fotabench.url import LIMITS

from conftest import assert_fb_error

# spec §3 limits, stated independently
HOST_NAME_MAX = 150
FTP_HOST_MAX, FTP_DIR_MAX, FTP_FILE_MAX, FTP_USER_MAX, FTP_PASSWORD_MAX = 39, 59, 24, 19, 19
URL_MAX = 199  # "keep the URL < 200 chars"


def refused(fn, *args, **kwargs) -> str:
    with pytest.raises(UrlError) as ei:
        fn(*args, **kwargs)
    assert_fb_error(ei.value, UrlError, "FB_ERR_URL")
    assert isinstance(ei.value, ValueError)
    return ei.value.message


def test_limits_match_spec():
    assert LIMITS == {"url": URL_MAX, "http_host_ip": 29, "http_host_name": HOST_NAME_MAX,
                      "ftp_host": FTP_HOST_MAX, "ftp_path": FTP_DIR_MAX,
                      "ftp_file": FTP_FILE_MAX, "ftp_user": FTP_USER_MAX,
                      "ftp_password": FTP_PASSWORD_MAX}


# --- HTTP ---------------------------------------------------------------------------------

@pytest.mark.parametrize("host,path,port,url", [
    ("23.11.67.89", "/filePath/xxx.bin", 80, "http://23.11.67.89/filePath/xxx.bin"),
    ("www.quectel.com", "/filePath/xxx.bin", 8080, "http://www.quectel.com:8080/filePath/xxx.bin"),
    ("10.0.0.2", "/APP.bin", 1, "http://10.0.0.2:1/APP.bin"),
    ("fota-server", "/a/b/c/APP_Upgrade_Package.bin", 65535,
     "http://fota-server:65535/a/b/c/APP_Upgrade_Package.bin"),
])
def test_http_build_and_parse(host, path, port, url):
    u = ModuleUrl.http(host, path, port=port)
    assert str(u) == u.url == url
    assert (u.scheme, u.host, u.port, u.path) == ("http", host, port, path)
    assert u.file == path.rsplit("/", 1)[1]
    assert u.host_is_ip == host[0].isdigit()
    assert (u.user, u.password) == ("", "")
    assert ModuleUrl.parse(url) == u


def test_http_port_80_omitted_and_default():
    assert ModuleUrl.http("h.example", "/x.bin").url == "http://h.example/x.bin"
    assert ModuleUrl.http("h.example", "/x.bin", port=80).url == "http://h.example/x.bin"
    assert ModuleUrl.parse("http://h.example/x.bin").port == 80
    assert ModuleUrl.parse("http://h.example:80/x.bin").port == 80


def test_http_port_goes_after_host():
    u = ModuleUrl.http("h.example", "/fota/x.bin", port=8080)
    assert u.url.startswith("http://h.example:8080/")
    # the application note's "file:port" form ends up in the request path: refused
    msg = refused(ModuleUrl.parse, "http://www.quectel.com/filePath/xxx.bin:8080")
    assert "HTTP path" in msg and "':'" in msg


def test_scheme_is_case_insensitive():
    assert ModuleUrl.parse("HTTP://h/x.bin").scheme == "http"
    assert ModuleUrl.parse("Ftp://h/x.bin:21@u:p").scheme == "ftp"


@pytest.mark.parametrize("url", ["https://h.example/x.bin", "HTTPS://h.example/x.bin"])
def test_https_refused(url):
    assert "https" in refused(ModuleUrl.parse, url)


@pytest.mark.parametrize("url", ["gopher://h/x.bin", "tftp://h/x.bin", "h.example/x.bin", "",
                                 "http:/h/x.bin", "file:///x.bin"])
def test_unknown_scheme_refused(url):
    assert "scheme" in refused(ModuleUrl.parse, url)


@pytest.mark.parametrize("url", ["http://user:pw@h.example/x.bin", "http://h.example/x@y.bin",
                                 "http://h.example/x.bin@"])
def test_http_at_refused(url):
    msg = refused(ModuleUrl.parse, url)
    assert "HTTP URL" in msg and "'@'" in msg


@pytest.mark.parametrize("path", ["/a@b.bin", "/a:b.bin"])
def test_http_builder_refuses_separators_in_path(path):
    msg = refused(ModuleUrl.http, "h.example", path)
    assert "HTTP path" in msg


def test_http_host_name_limit():
    at = "a" * HOST_NAME_MAX
    assert ModuleUrl.http(at, "/x.bin").host == at
    assert ModuleUrl.parse(f"http://{at}/x.bin").host == at
    for fn in (lambda h: ModuleUrl.http(h, "/x.bin"), lambda h: ModuleUrl.parse(f"http://{h}/x.bin")):
        msg = refused(fn, at + "a")
        assert "HTTP host" in msg and "151" in msg and "150" in msg


@pytest.mark.parametrize("host", ["300.1.1.1", "1.2.3", "1.2.3.4.5", "1..2.3", "1.2.3.1000",
                                  "256.256.256.256", "1234"])
def test_malformed_ipv4_refused(host):
    msg = refused(ModuleUrl.parse, f"http://{host}/x.bin")
    assert "HTTP host" in msg and host in msg and "IPv4" in msg
    msg = refused(ModuleUrl.http, host, "/x.bin")
    assert "HTTP host" in msg


@pytest.mark.parametrize("host", ["1.2.3.4", "255.255.255.255", "0.0.0.0", "192.168.10.10"])
def test_valid_ipv4(host):
    u = ModuleUrl.parse(f"http://{host}/x.bin")
    assert u.host_is_ip and u.host == host


def test_host_name_is_not_ip():
    assert ModuleUrl.parse("http://fota1.example/x.bin").host_is_ip is False


def test_url_length_limit():
    base = "http://h.example/"
    ok = base + "x" * (URL_MAX - len(base))
    assert len(ok) == URL_MAX
    assert ModuleUrl.parse(ok).url == ok
    assert ModuleUrl.http("h.example", ok[len("http://h.example"):]).url == ok
    msg = refused(ModuleUrl.parse, ok + "x")
    assert "URL" in msg and "200" in msg and "199" in msg
    msg = refused(ModuleUrl.http, "h.example", ok[len("http://h.example"):] + "x")
    assert "URL" in msg and "200" in msg and "199" in msg


@pytest.mark.parametrize("url", ["http://h.example/dir/", "http://h.example/", "http://h:81/"])
def test_http_path_ending_in_slash_refused(url):
    msg = refused(ModuleUrl.parse, url)
    assert "HTTP path" in msg and "'/'" in msg


@pytest.mark.parametrize("url", ["http://h.example", "http://h.example:8080"])
def test_http_without_path_refused(url):
    assert "path" in refused(ModuleUrl.parse, url)


@pytest.mark.parametrize("bad", [" ", "\t", "\r", "\n", "\x01", "\x7f", '"'])
def test_forbidden_characters(bad):
    for url in (f"http://h.example/a{bad}b.bin", f"ftp://h.example/a{bad}b.bin:21@u:p",
                f"ftp://h.example/ab.bin:21@u:p{bad}w"):
        msg = refused(ModuleUrl.parse, url)
        assert "URL" in msg and f"0x{ord(bad):02X}" in msg
    msg = refused(ModuleUrl.http, "h.example", f"/a{bad}b.bin")
    assert "HTTP path" in msg
    msg = refused(ModuleUrl.ftp, "h.example", "/ab.bin", password=f"p{bad}w")
    assert "FTP password" in msg


@pytest.mark.parametrize("host", ["h_x", "h x", "h/x", "h?x", ""])
def test_bad_host_characters(host):
    refused(ModuleUrl.http, host, "/x.bin")
    refused(ModuleUrl.ftp, host, "/x.bin")


@pytest.mark.parametrize("port", [0, 65536, -1, 100000])
def test_http_builder_port_range(port):
    msg = refused(ModuleUrl.http, "h.example", "/x.bin", port=port)
    assert "port" in msg and "1..65535" in msg


@pytest.mark.parametrize("url", ["http://h:0/x.bin", "http://h:65536/x.bin", "http://h:/x.bin",
                                 "http://h:8o/x.bin"])
def test_http_parse_port_refused(url):
    assert "port" in refused(ModuleUrl.parse, url)


def test_embedded_nul_refused():
    with pytest.raises(UrlError):
        ModuleUrl.parse("http://h.example/a.bin\x00 and more")


@pytest.mark.parametrize("url", ["http://bücher.example/x.bin", "ftp://bücher.example/x.bin:21@u:p"])
def test_non_ascii_host_refused_with_url_error(url):
    with pytest.raises(UrlError) as ei:
        ModuleUrl.parse(url)
    assert_fb_error(ei.value, UrlError, "FB_ERR_URL")


# --- FTP ----------------------------------------------------------------------------------

def test_ftp_builder_always_writes_port_and_credentials():
    assert ModuleUrl.ftp("10.0.0.2", "/fota/APP.bin").url == \
        "ftp://10.0.0.2/fota/APP.bin:21@anonymous:fotabench"
    u = ModuleUrl.ftp("ftp.example", "/fota/v2/APP.bin", port=2121, user="bench", password="pw")
    assert u.url == "ftp://ftp.example/fota/v2/APP.bin:2121@bench:pw"
    assert (u.scheme, u.host, u.port, u.path, u.file, u.user, u.password) == \
        ("ftp", "ftp.example", 2121, "/fota/v2", "APP.bin", "bench", "pw")


def test_note_example_parses():
    u = ModuleUrl.parse("ftp://www.jjj.com/filePath/xxx.bin:8021@username:password")
    assert (u.scheme, u.host, u.host_is_ip, u.port, u.path, u.file, u.user, u.password) == \
        ("ftp", "www.jjj.com", False, 8021, "/filePath", "xxx.bin", "username", "password")


def test_ftp_file_at_root():
    u = ModuleUrl.ftp("h.example", "/APP.bin", port=21, user="u", password="p")
    assert u.url == "ftp://h.example/APP.bin:21@u:p"
    assert (u.path, u.file) == ("", "APP.bin")


def test_ftp_empty_password_allowed():
    u = ModuleUrl.ftp("h.example", "/APP.bin", user="u", password="")
    assert u.url.endswith(":21@u:") and u.password == ""
    assert ModuleUrl.parse("ftp://h/a.bin:21@u:").password == ""


@pytest.mark.parametrize("password", ["p@ss", "a:b", "@:@:", "x@y:z@", ":"])
def test_ftp_password_may_contain_at_and_colon(password):
    u = ModuleUrl.ftp("h.example", "/d/a.bin", port=99, user="user", password=password)
    assert u.url == f"ftp://h.example/d/a.bin:99@user:{password}"
    assert (u.user, u.password, u.port, u.path, u.file) == ("user", password, 99, "/d", "a.bin")
    # the password is everything after the first ':' behind '@'
    assert ModuleUrl.parse(u.url).password == password


@pytest.mark.parametrize("user", ["us:er", "us@er"])
def test_ftp_builder_refuses_separator_in_user(user):
    assert "FTP user" in refused(ModuleUrl.ftp, "h.example", "/a.bin", user=user, password="p")


def test_ftp_parse_refuses_at_in_user():
    url = "ftp://h.example/d/f.bin:21@us@er:pw"
    with pytest.raises(UrlError) as ei:
        ModuleUrl.parse(url)
    assert "FTP user" in ei.value.message


def _dir(n: int) -> str:
    """A directory part of exactly n characters, leading '/' included ('/ddd/ddd...')."""
    assert n >= 1
    s = "/" + "".join("/" if i % 10 == 9 else "d" for i in range(n - 1))
    return s[:-1] + "d" if s.endswith("/") else s


# (field name in messages, limit, builder kwargs for a value of length n, url for length n)
FTP_FIELDS = {
    "FTP host": (FTP_HOST_MAX,
                 lambda n: dict(host="h" * n, path="/d/f.bin"),
                 lambda n: f"ftp://{'h' * n}/d/f.bin:21@u:p"),
    "FTP path (directory)": (FTP_DIR_MAX,
                             lambda n: dict(host="h", path=_dir(n) + "/f.bin"),
                             lambda n: f"ftp://h{_dir(n)}/f.bin:21@u:p"),
    "FTP file name": (FTP_FILE_MAX,
                      lambda n: dict(host="h", path="/d/" + "f" * n),
                      lambda n: f"ftp://h/d/{'f' * n}:21@u:p"),
    "FTP user": (FTP_USER_MAX,
                 lambda n: dict(host="h", path="/d/f.bin", user="u" * n),
                 lambda n: f"ftp://h/d/f.bin:21@{'u' * n}:p"),
    "FTP password": (FTP_PASSWORD_MAX,
                     lambda n: dict(host="h", path="/d/f.bin", password="p@:" * (n // 3) + "p" * (n % 3)),
                     lambda n: f"ftp://h/d/f.bin:21@u:{'p@:' * (n // 3) + 'p' * (n % 3)}"),
}


@pytest.mark.parametrize("field", list(FTP_FIELDS))
def test_ftp_field_limits(field):
    limit, kwargs, url = FTP_FIELDS[field]
    args = dict(user="u", password="p")
    args.update(kwargs(limit))
    built = ModuleUrl.ftp(**args)
    parsed = ModuleUrl.parse(url(limit))
    value = {"FTP host": parsed.host, "FTP path (directory)": parsed.path,
             "FTP file name": parsed.file, "FTP user": parsed.user,
             "FTP password": parsed.password}[field]
    assert len(value) == limit
    assert ModuleUrl.parse(built.url) == built

    args = dict(user="u", password="p")
    args.update(kwargs(limit + 1))
    for msg in (refused(ModuleUrl.ftp, **args), refused(ModuleUrl.parse, url(limit + 1))):
        assert field in msg
        assert str(limit + 1) in msg and str(limit) in msg


def test_ftp_all_fields_at_their_limits():
    host, d, f = "h" * FTP_HOST_MAX, _dir(FTP_DIR_MAX), "f" * FTP_FILE_MAX
    u = ModuleUrl.ftp(host, f"{d}/{f}", port=65535, user="u" * FTP_USER_MAX,
                      password="p" * FTP_PASSWORD_MAX)
    assert (u.host, u.path, u.file) == (host, d, f)
    assert len(u.url) <= URL_MAX


@pytest.mark.parametrize("url", ["ftp://h:21/d/f.bin", "ftp://h:21/d/f.bin:21@u:p",
                                 "ftp://h:2121/f.bin@u:p"])
def test_ftp_port_before_path_refused(url):
    msg = refused(ModuleUrl.parse, url)
    assert "port before the path" in msg


@pytest.mark.parametrize("url,what", [
    ("ftp://192.168.10.10/filePath/APP.bin", "':port'"),
    ("ftp://h/d/f.bin@u:p", "':port'"),
    ("ftp://h/d/f.bin:21", "'@user:password'"),
    ("ftp://h/d/f.bin:21@u", "':password'"),
    ("ftp://h/d/f.bin:21@:p", "FTP user is empty"),
    ("ftp://h/d/:21@u:p", "FTP file name is empty"),
    ("ftp://h", "no path"),
    ("ftp://u:p@h/f.bin:21@u:p", "port before the path"),
    ("ftp://u@h/f.bin:21@u:p", "'@' in the host"),
])
def test_ftp_missing_parts_refused(url, what):
    assert what in refused(ModuleUrl.parse, url)


@pytest.mark.parametrize("port,ok", [("0", False), ("65536", False), ("99999999999", False),
                                     ("", False), ("2a", False), ("1", True), ("65535", True)])
def test_ftp_port_range(port, ok):
    url = f"ftp://h/d/f.bin:{port}@u:p"
    if ok:
        assert ModuleUrl.parse(url).port == int(port)
    else:
        assert "port" in refused(ModuleUrl.parse, url)
    if port.isdigit() and len(port) < 10:
        if ok:
            assert ModuleUrl.ftp("h", "/d/f.bin", port=int(port)).port == int(port)
        else:
            msg = refused(ModuleUrl.ftp, "h", "/d/f.bin", port=int(port))
            assert "port" in msg and "1..65535" in msg


@pytest.mark.parametrize("path", ["/d/a@b.bin", "/d:x/a.bin", "d/a.bin", "/d/", "/"])
def test_ftp_builder_path_refusals(path):
    msg = refused(ModuleUrl.ftp, "h.example", path)
    assert "FTP" in msg


def test_ftp_malformed_ipv4_refused():
    assert "IPv4" in refused(ModuleUrl.parse, "ftp://300.1.1.1/f.bin:21@u:p")
    assert ModuleUrl.parse("ftp://192.168.10.10/f.bin:21@u:p").host_is_ip


# --- property tests -----------------------------------------------------------------------

LABEL = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1,
                max_size=12)
SEGMENT = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~", min_size=1,
                  max_size=12)
CRED = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!$%&*+", max_size=19)
PASSWORD = st.text("abcdefghijklmnopqrstuvwxyz0123456789@:-_./!#$%&*+=?", max_size=19)


@st.composite
def hostnames(draw, max_len):
    labels = draw(st.lists(LABEL, min_size=1, max_size=8))
    host = ".".join(labels)[:max_len].strip(".")
    assume(host and any(c.isalpha() or c == "-" for c in host))  # a name, not an IP
    return host


@st.composite
def ftp_paths(draw):
    segments = draw(st.lists(SEGMENT, max_size=6))
    directory = "".join("/" + s for s in segments)
    assume(len(directory) <= FTP_DIR_MAX)
    file = draw(SEGMENT.filter(lambda s: len(s) <= FTP_FILE_MAX))
    return directory, file


@given(host=hostnames(FTP_HOST_MAX), dir_file=ftp_paths(), port=st.integers(1, 65535),
       user=CRED.filter(bool), password=PASSWORD)
def test_ftp_roundtrip(host, dir_file, port, user, password):
    directory, file = dir_file
    u = ModuleUrl.ftp(host, f"{directory}/{file}", port=port, user=user, password=password)
    assert u.url == f"ftp://{host}{directory}/{file}:{port}@{user}:{password}"
    p = ModuleUrl.parse(u.url)
    assert (p.scheme, p.host, p.port, p.path, p.file, p.user, p.password) == \
        ("ftp", host, port, directory, file, user, password)
    assert p.host_is_ip is False


@given(host=st.one_of(hostnames(HOST_NAME_MAX),
                      st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))),
       segments=st.lists(SEGMENT, min_size=1, max_size=8), port=st.integers(1, 65535))
def test_http_roundtrip(host, segments, port):
    path = "".join("/" + s for s in segments)
    url = f"http://{host}{'' if port == 80 else f':{port}'}{path}"
    assume(len(url) <= URL_MAX)
    u = ModuleUrl.http(host, path, port=port)
    assert u.url == url
    p = ModuleUrl.parse(url)
    assert (p.scheme, p.host, p.port, p.path, p.file) == ("http", host, port, path, segments[-1])
    assert p.host_is_ip == all(c in "0123456789." for c in host)


@given(st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127), max_size=220))
def test_parse_arbitrary_ascii_never_crashes(url):
    try:
        u = ModuleUrl.parse(url)
    except UrlError as e:
        assert e.message and "\n" not in e.message
        return
    assert len(url) <= URL_MAX
    assert not any(c in url for c in ' "\t\r\n\x7f')
    assert u.scheme in ("http", "ftp") and u.host
