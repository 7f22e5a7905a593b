/* A shared object whose constructor writes $MARKER when it is loaded, e.g. by `enable -f`. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((constructor)) static void loaded(void) {
    const char *marker = getenv("MARKER");
    int fd = marker ? open(marker, O_WRONLY | O_CREAT, 0644) : -1;
    if (fd >= 0) {
        write(fd, "loaded\n", 7);
        close(fd);
    }
}
