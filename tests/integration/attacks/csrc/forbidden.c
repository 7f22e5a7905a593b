/* The program the session must never run: it writes the file named by $MARKER at once. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

int main(void) {
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
