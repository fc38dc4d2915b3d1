/* fotabench clean-room declarations of the OpenCPU API: basic types.
 * Written from the public application notes' descriptions; not copied from Quectel's SDK.
 * Only what the bench agent uses is declared. Embedded C: no host headers. */
#ifndef QL_TYPE_H
#define QL_TYPE_H

typedef unsigned char u8;
typedef signed char s8;
typedef unsigned short u16;
typedef signed short s16;
typedef unsigned int u32;
typedef signed int s32;
typedef unsigned long long u64;
typedef signed long long s64;
typedef unsigned char bool;

#ifndef TRUE
#define TRUE 1
#endif
#ifndef FALSE
#define FALSE 0
#endif
#ifndef NULL
#define NULL ((void *)0)
#endif

#endif
