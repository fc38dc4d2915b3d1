/* fotabench C core: CRC-16/XMODEM, the FOTA package header checksum. */
#ifndef FOTABENCH_CRC16_H
#define FOTABENCH_CRC16_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Poly 0x1021, init 0 (pass 0 to start), no reflection, no final XOR.
 * Chain calls by passing the previous result. Check value of "123456789": 0x31C3. */
uint16_t fb_crc16_xmodem(uint16_t crc, const void *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif
