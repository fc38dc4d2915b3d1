/* fotabench._core: MD5 of files and descriptors (GIL released while hashing). */
#include "core.h"

#include "fotabench/crc16.h"
#include "fotabench/md5.h"

static PyObject *md5_file(PyObject *module, PyObject *arg)
{
    PyObject *path = NULL;
    if (!PyUnicode_FSConverter(arg, &path))
        return NULL;
    uint8_t digest[FB_MD5_LEN];
    fb_error err;
    fb_status st;
    Py_BEGIN_ALLOW_THREADS
    st = fb_md5_file(PyBytes_AS_STRING(path), digest, &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (st != FB_OK)
        return core_raise(module, &err);
    return PyBytes_FromStringAndSize((const char *)digest, FB_MD5_LEN);
}

static PyObject *md5_fd(PyObject *module, PyObject *arg)
{
    int fd = PyObject_AsFileDescriptor(arg);
    if (fd < 0)
        return NULL;
    uint8_t digest[FB_MD5_LEN];
    fb_error err;
    fb_status st;
    Py_BEGIN_ALLOW_THREADS
    st = fb_md5_fd(fd, digest, &err);
    Py_END_ALLOW_THREADS
    if (st != FB_OK)
        return core_raise(module, &err);
    return PyBytes_FromStringAndSize((const char *)digest, FB_MD5_LEN);
}

static PyObject *crc16_xmodem(PyObject *module, PyObject *args)
{
    (void)module;
    Py_buffer data;
    unsigned int crc = 0;
    if (!PyArg_ParseTuple(args, "y*|I:crc16_xmodem", &data, &crc))
        return NULL;
    uint16_t r = fb_crc16_xmodem((uint16_t)crc, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    return PyLong_FromLong(r);
}

PyMethodDef core_md5_methods[] = {
    {"md5_file", md5_file, METH_O,
     "md5_file(path) -> bytes\n\nMD5 digest (16 bytes) of a whole file, streamed in constant "
     "memory."},
    {"md5_fd", md5_fd, METH_O,
     "md5_fd(fd) -> bytes\n\nMD5 digest of everything readable from a file descriptor (or "
     "object with fileno()) until EOF."},
    {"crc16_xmodem", crc16_xmodem, METH_VARARGS,
     "crc16_xmodem(data, crc=0) -> int\n\nCRC-16/XMODEM, the package header checksum."},
    {NULL, NULL, 0, NULL},
};
