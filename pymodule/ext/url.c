/* fotabench._core: module URL rules (pure computation: no GIL release needed). */
#include "core.h"

#include "fotabench/url.h"

static PyObject *url_fields(const fb_url *u)
{
    return Py_BuildValue("{s:s,s:s,s:O,s:i,s:s,s:s,s:s,s:s}", "scheme",
                         u->scheme == FB_URL_HTTP ? "http" : "ftp", "host", u->host,
                         "host_is_ip", u->host_is_ip ? Py_True : Py_False, "port", u->port,
                         "path", u->path, "file", u->file, "user", u->user, "password",
                         u->password);
}

static PyObject *url_parse(PyObject *module, PyObject *arg)
{
    Py_ssize_t len;
    const char *s = PyUnicode_Check(arg) ? PyUnicode_AsUTF8AndSize(arg, &len) : NULL;
    if (!s) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "url must be a str");
        return NULL;
    }
    fb_url u;
    fb_error err;
    if ((size_t)len != strlen(s)) {
        /* The C parser would stop at the NUL and pass the rest unchecked. */
        fb_error_set(&err, FB_ERR_URL, "URL has character 0x00 at offset %zu", strlen(s));
        return core_raise(module, &err);
    }
    if (fb_url_parse(s, &u, &err) != FB_OK)
        return core_raise(module, &err);
    return url_fields(&u);
}

static int port_arg(PyObject *module, long long port, uint16_t *out)
{
    if (port < 1 || port > 65535) {
        fb_error err;
        fb_error_set(&err, FB_ERR_URL, "port %lld is outside 1..65535", port);
        core_raise(module, &err);
        return -1;
    }
    *out = (uint16_t)port;
    return 0;
}

static PyObject *url_http(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"host", "path", "port", NULL};
    const char *host, *path;
    long long port = 80;
    uint16_t p;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ss|L:url_http", kwlist, &host, &path, &port))
        return NULL;
    if (port_arg(module, port, &p) < 0)
        return NULL;
    char out[FB_URL_MAX_LEN + 1];
    fb_error err;
    if (fb_url_http(host, p, path, out, sizeof out, &err) != FB_OK)
        return core_raise(module, &err);
    return PyUnicode_FromString(out);
}

static PyObject *url_ftp(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"host", "path", "user", "password", "port", NULL};
    const char *host, *path, *user, *password;
    long long port = 21;
    uint16_t p;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ssss|L:url_ftp", kwlist, &host, &path,
                                     &user, &password, &port))
        return NULL;
    if (port_arg(module, port, &p) < 0)
        return NULL;
    char out[FB_URL_MAX_LEN + 1];
    fb_error err;
    if (fb_url_ftp(host, p, path, user, password, out, sizeof out, &err) != FB_OK)
        return core_raise(module, &err);
    return PyUnicode_FromString(out);
}

static PyObject *url_limits(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i}", "url", FB_URL_MAX_LEN,
                         "http_host_ip", FB_HTTP_HOST_IP_MAX, "http_host_name",
                         FB_HTTP_HOST_NAME_MAX, "ftp_host", FB_FTP_HOST_MAX, "ftp_path",
                         FB_FTP_PATH_MAX, "ftp_file", FB_FTP_FILE_MAX, "ftp_user",
                         FB_FTP_USER_MAX, "ftp_password", FB_FTP_PASSWORD_MAX);
}

PyMethodDef core_url_methods[] = {
    {"url_parse", url_parse, METH_O,
     "url_parse(url) -> dict\n\nThe fields the module's parser decodes; UrlError if it would "
     "refuse or mis-read the URL."},
    {"url_http", (PyCFunction)(void (*)(void))url_http, METH_VARARGS | METH_KEYWORDS,
     "url_http(host, path, port=80) -> str"},
    {"url_ftp", (PyCFunction)(void (*)(void))url_ftp, METH_VARARGS | METH_KEYWORDS,
     "url_ftp(host, path, user, password, port=21) -> str"},
    {"url_limits", url_limits, METH_NOARGS, "url_limits() -> dict of the module's limits"},
    {NULL, NULL, 0, NULL},
};
