/* The program the session must never run: it writes the file named by $MARKER at once, or
 * after $FORBIDDEN_DELAY_MS milliseconds when that is set. */
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    const char *delay = getenv("FORBIDDEN_DELAY_MS");
    if (delay) {
        long ms = strtol(delay, NULL, 10);
        struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&pause, NULL);
    }
    const char *marker = getenv("MARKER");
    if (marker) {
        int fd = open(marker, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            write(fd, "ran\n", 4);
            close(fd);
        }
    }
    return 0;
}
