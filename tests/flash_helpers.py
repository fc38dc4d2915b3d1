"""Helpers for flashing tests and bench/perf/flash.py: a SYNTHETIC download agent file
in mtkclient's legacy layout (written from docs/flashing.md, never a MediaTek binary) and
the operator's power-up in download mode."""
from __future__ import annotations

import struct
import threading
import time

from fotabench.sim import VirtualModule


def make_da_file(entries: list[tuple[int, list[tuple[int, bytes]]]]) -> bytes:
    """mtkclient's legacy DA loader layout as docs/flashing.md reads it: a 0x6C-byte header
    ("MTK_DOWNLOAD_AGENT", id, version, magic 0x22668899, entry count), 0xDC-byte entries
    (10 u16: magic 0xDADA, hw_code, hw_sub_code, hw_version, sw_version, reserved,
    pagesize, reserved, entry_region_index, region_count; 10 regions of 5 u32: m_buf,
    m_len, m_start_addr, m_start_offset, m_sig_len), then the agents' bytes."""
    head = bytearray(0x6C)
    head[:18] = b"MTK_DOWNLOAD_AGENT"
    head[0x20:0x20 + 22] = b"SYNTHETIC test agent 1"
    struct.pack_into("<III", head, 0x60, 4, 0x22668899, len(entries))
    table, blobs = bytearray(), bytearray()
    base = 0x6C + 0xDC * len(entries)
    for hw_code, parts in entries:
        e = bytearray(0xDC)
        struct.pack_into("<10H", e, 0, 0xDADA, hw_code, 0x8A00, 0xCA00, 0, 0, 0x200, 0, 1,
                         len(parts) + 1)
        for r, (addr, data) in enumerate(parts, start=1):
            struct.pack_into("<5I", e, 20 + 20 * r, base + len(blobs), len(data), addr, 0, 0)
            blobs += data
        table += e
    return bytes(head + table + blobs)



def power_up_in_download_mode(vm: VirtualModule, delay: float = 0.1) -> threading.Thread:
    """The operator's step: after the flash started, VBAT on with PWRKEY held low."""
    def run():
        time.sleep(delay)  # the order the manual asks for: start the tool, then power
        vm.set_line("VBAT", 1)
        vm.set_line("PWRKEY", 0)
    t = threading.Thread(target=run)
    t.start()
    return t
