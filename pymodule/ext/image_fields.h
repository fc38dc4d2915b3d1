/* fotabench._core: app image fields as a dict (shared by image.c and package.c). */
#ifndef FOTABENCH_EXT_IMAGE_FIELDS_H
#define FOTABENCH_EXT_IMAGE_FIELDS_H

#include "fotabench/appimage.h"

PyObject *core_app_fields(const fb_app_info *info);

#endif
