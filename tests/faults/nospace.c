/* write(2) fails with ENOSPC once this process has written FULL_DISK_AFTER bytes into files under
   FULL_DISK_UNDER: a disk that fills up, without a mount. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long long written = 0;

ssize_t write(int fd, const void *data, size_t size) {
    static ssize_t (*real_write)(int, const void *, size_t) = NULL;
    if (real_write == NULL)
        real_write = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    const char *under = getenv("FULL_DISK_UNDER"), *after = getenv("FULL_DISK_AFTER");
    if (under != NULL && after != NULL && fd > 2) {
        char link[64], target[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t length = readlink(link, target, sizeof target - 1);
        if (length > 0) {
            target[length] = '\0';
            if (strncmp(target, under, strlen(under)) == 0) {
                if (written + (long long)size > atoll(after)) {
                    errno = ENOSPC;
                    return -1;
                }
                written += (long long)size;
            }
        }
    }
    return real_write(fd, data, size);
}
