#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/vfs.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
