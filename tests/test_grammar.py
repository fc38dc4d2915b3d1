"""The state grammar of spec opencpu-fota.md section 2. The sequences here are written
from the spec's text (and its quirks), not produced by the code under test."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fotabench.bench.grammar import STATES, check_states, grammar_for

S, CING, CED, GF, OK, RB, FAIL, URL = ("UP_START", "UP_CONNECTING", "UP_CONNECTED",
                                       "UP_GETTING_FILE", "UP_GET_FILE_OK",
                                       "UP_SYSTEM_REBOOT", "UP_UPGRADFAILED",
                                       "UP_URLDECODEFAIL")


def http_ok(*pcts, ip=True):
    head = [(S, 0)] + ([(CING, 0)] if ip else []) + [(CED, 0), (GF, 0)]
    return head + [(GF, p) for p in pcts] + [(GF, 100), (RB, 100)]


FTP_OK = [(S, 0), (CING, 0), (CED, 0), (GF, 0), (OK, 100), (RB, 100)]


# --- HTTP: what real modules send ---------------------------------------------------------

@pytest.mark.parametrize("seq", [
    http_ok(5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95),
    http_ok(5, 5, 10, 10, 10, 50, 50, 95),                 # duplicates likely
    http_ok(),                                             # a small file skips every step
    http_ok(35, 80),                                       # ... or some
    http_ok(5, 10)[:-1] + [(GF, 100), (RB, 100)],          # 100 twice
])
def test_http_real_sequences_pass(seq):
    r = check_states("http", seq, host_is_ip=True)
    assert r.ok and r.ending == "success" and r.succeeded, str(r)


def test_http_connecting_absent_for_a_host_name():
    assert check_states("http", http_ok(50, ip=False), host_is_ip=False).succeeded
    # ...and present for an IP literal: missing it there parts from the grammar
    r = check_states("http", http_ok(50, ip=False), host_is_ip=True)
    assert not r.ok and r.index == 1 and "IP literal" in r.reason
    # for a name, UP_CONNECTING is wrong
    r = check_states("http", http_ok(50, ip=True), host_is_ip=False)
    assert not r.ok and r.index == 1 and "host name" in r.reason
    # unknown host kind: either is accepted
    assert check_states("http", http_ok(ip=True)).ok and check_states("http", http_ok(ip=False)).ok


def test_http_never_sends_get_file_ok():
    seq = http_ok(50)[:-2] + [(GF, 100), (OK, 100), (RB, 100)]
    r = check_states("http", seq, host_is_ip=True)
    assert not r.ok and r.seen[r.index] == (OK, 100)
    assert "never reported over HTTP" in r.reason


def test_http_percent_rules():
    r = check_states("http", http_ok(10, 40, 35), host_is_ip=True)
    assert not r.ok and r.seen[r.index] == (GF, 35) and "went down" in r.reason
    r = check_states("http", http_ok(10, 42), host_is_ip=True)
    assert not r.ok and r.seen[r.index] == (GF, 42) and "multiple of 5" in r.reason
    r = check_states("http", http_ok(10, 50)[:-2] + [(GF, 0), (GF, 100), (RB, 100)],
                     host_is_ip=True)
    assert not r.ok and "went down" in r.reason


@pytest.mark.parametrize("seq,ending", [
    ([(S, 0), (CING, 0), (FAIL, 0)], "failed"),                        # connection failed
    ([(S, 0), (CING, 0), (CED, 0), (GF, 0), (GF, 45), (FAIL, 0)], "failed"),  # mid-download
    # the MD5 check fails at the end, reported twice
    ([(S, 0), (CING, 0), (CED, 0), (GF, 0), (GF, 100), (FAIL, 0), (FAIL, 0)], "failed"),
    ([(S, 0), (URL, 0), (FAIL, 0)], "url decode failed"),              # carries on to fail
    ([(S, 0), (URL, 0)], "url decode failed"),
])
def test_http_failure_endings(seq, ending):
    r = check_states("http", seq, host_is_ip=True)
    assert r.ok and r.ending == ending and not r.succeeded, str(r)


def test_http_failure_three_times_parts():
    r = check_states("http", [(S, 0), (CING, 0), (FAIL, 0), (FAIL, 0), (FAIL, 0)],
                     host_is_ip=True)
    assert not r.ok and r.index == 4


# --- FTP ---------------------------------------------------------------------------------------

def test_ftp_real_sequence_and_quirks():
    assert check_states("ftp", FTP_OK).succeeded
    # no percentages between 0 and 100 over FTP
    r = check_states("ftp", FTP_OK[:4] + [(GF, 50)] + FTP_OK[4:])
    assert not r.ok and r.seen[r.index] == (GF, 50)
    # GET_FILE_OK is required over FTP
    r = check_states("ftp", FTP_OK[:4] + [(RB, 100)])
    assert not r.ok and r.seen[r.index] == (RB, 100)
    # five failed connections: no callback after CONNECTING (only a reset request)
    r = check_states("ftp", [(S, 0), (CING, 0)])
    assert r.ok and r.ending == "connection failed"
    # URL decode failure: UP_URLDECODEFAIL 0 alone
    r = check_states("ftp", [(URL, 0)])
    assert r.ok and r.ending == "url decode failed"
    # a failure after the download (MD5) ends in UPGRADFAILED
    assert check_states("ftp", FTP_OK[:5] + [(FAIL, 0)]).ending == "failed"


def test_incomplete_prefix_is_ok_only_when_not_complete():
    seq = http_ok(20)[:5]
    assert check_states("http", seq, host_is_ip=True, complete=False).ok
    r = check_states("http", seq, host_is_ip=True)
    assert not r.ok and r.index == len(seq) and "stopped" in r.reason


def test_message_shows_seen_expected_and_where_they_part():
    seq = [(S, 0), (CING, 0), (CED, 0), (GF, 0), (OK, 100), (RB, 100)]
    text = str(check_states("http", seq, host_is_ip=True))
    assert "part from the grammar" in text
    assert "5. UP_GET_FILE_OK 100   <-- parts here" in text
    assert "expected there: UP_GETTING_FILE" in text
    assert "grammar: HTTP (host is an IP literal)" in text
    assert "never: UP_GET_FILE_OK" in text
    d = check_states("http", seq, host_is_ip=True).to_dict()
    assert d["ok"] is False and d["index"] == 4 and d["seen"][4] == [OK, 100]


def test_unknown_protocol():
    with pytest.raises(ValueError, match="no state grammar"):
        grammar_for("tftp")


# --- property: every sequence the grammar describes passes; nothing crashes ------------------

@st.composite
def http_valid(draw):
    ip = draw(st.booleans())
    pcts = sorted(draw(st.lists(st.sampled_from(range(5, 100, 5)), max_size=30)))
    seq = http_ok(*pcts, ip=ip)
    dups = draw(st.lists(st.integers(0, len(seq) - 1), max_size=5))
    for i in sorted(dups, reverse=True):
        if seq[i][0] == GF:
            seq.insert(i, seq[i])
    cut = draw(st.none() | st.integers(1, len(seq) - 2))
    if cut is not None:
        seq = seq[:cut] + [(FAIL, 0)] * draw(st.integers(1, 2))
    return ip, seq


@given(http_valid())
@settings(max_examples=300, deadline=None)
def test_property_generated_http_sequences_pass(case):
    ip, seq = case
    r = check_states("http", seq, host_is_ip=ip)
    assert r.ok, str(r)


@given(st.sampled_from(["http", "ftp"]), st.none() | st.booleans(),
       st.lists(st.tuples(st.sampled_from(STATES + ("BOGUS",)),
                          st.integers(-5, 105)), max_size=25))
@settings(max_examples=500, deadline=None)
def test_property_any_sequence_gets_a_verdict(protocol, ip, seq):
    r = check_states(protocol, seq, host_is_ip=ip)
    assert r.ok or (r.index is not None and 0 <= r.index <= len(seq) and r.reason)
    str(r)  # always printable
