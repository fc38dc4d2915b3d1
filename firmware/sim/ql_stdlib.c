/* fotabench virtual module: the C library subset OpenCPU offers apps (ql_stdlib.h), on libc. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ql_type.h"
#include "ql_stdlib.h"

void *Ql_memset(void *dest, u8 value, u32 size) { return memset(dest, value, size); }
void *Ql_memcpy(void *dest, const void *src, u32 size) { return memcpy(dest, src, size); }
s32 Ql_memcmp(const void *a, const void *b, u32 size) { return memcmp(a, b, size); }
char *Ql_strcpy(char *dest, const char *src) { return strcpy(dest, src); }
char *Ql_strncpy(char *dest, const char *src, u32 size) { return strncpy(dest, src, size); }
char *Ql_strcat(char *s1, const char *s2) { return strcat(s1, s2); }
s32 Ql_strcmp(const char *s1, const char *s2) { return strcmp(s1, s2); }
s32 Ql_strncmp(const char *s1, const char *s2, u32 size) { return strncmp(s1, s2, size); }
u32 Ql_strlen(const char *str) { return (u32)strlen(str); }
char *Ql_strchr(const char *s1, s32 ch) { return strchr(s1, ch); }
char *Ql_strstr(const char *s1, const char *s2) { return strstr(s1, s2); }
s32 Ql_atoi(const char *s) { return atoi(s); }
s32 Ql_toupper(s32 c) { return toupper(c & 0xFF); }

s32 Ql_sprintf(char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsprintf(buf, fmt, ap);
    va_end(ap);
    return n;
}

s32 Ql_snprintf(char *buf, u32 size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}
