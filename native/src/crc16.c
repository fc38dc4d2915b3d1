#include "fotabench/crc16.h"

/* Hand-written: it is eight lines over at most 76 bytes per package, and neither
 * OpenSSL nor zlib offers CRC-16/XMODEM; a dependency would cost more than it saves. */
uint16_t fb_crc16_xmodem(uint16_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len--) {
        crc ^= (uint16_t)(*p++ << 8);
        for (int bit = 0; bit < 8; bit++)
            crc = (uint16_t)((crc & 0x8000u) ? ((unsigned)crc << 1) ^ 0x1021u : (unsigned)crc << 1);
    }
    return crc;
}
