/* fotabench clean-room declarations: the C library subset OpenCPU offers to apps.
 * Apps call these instead of libc (the OpenCPU environment has no libc of its own). */
#ifndef QL_STDLIB_H
#define QL_STDLIB_H

#include "ql_type.h"

void *Ql_memset(void *dest, u8 value, u32 size);
void *Ql_memcpy(void *dest, const void *src, u32 size);
s32 Ql_memcmp(const void *a, const void *b, u32 size);
char *Ql_strcpy(char *dest, const char *src);
char *Ql_strncpy(char *dest, const char *src, u32 size);
char *Ql_strcat(char *s1, const char *s2);
s32 Ql_strcmp(const char *s1, const char *s2);
s32 Ql_strncmp(const char *s1, const char *s2, u32 size);
u32 Ql_strlen(const char *str);
char *Ql_strchr(const char *s1, s32 ch);
char *Ql_strstr(const char *s1, const char *s2);
s32 Ql_atoi(const char *s);
s32 Ql_sprintf(char *buf, const char *fmt, ...);
s32 Ql_snprintf(char *buf, u32 size, const char *fmt, ...);
s32 Ql_toupper(s32 c);

#endif
