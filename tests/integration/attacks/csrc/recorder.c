/* An allowed program that appends its argv, one line per run, to $RECORD. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *record = getenv("RECORD");
    char line[512] = "";
    for (int i = 1; i < argc && strlen(line) + strlen(argv[i]) + 2 < sizeof line; i++) {
        strcat(line, argv[i]);
        strcat(line, " ");
    }
    strcat(line, "\n");
    if (record) {
        int fd = open(record, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            write(fd, line, strlen(line));
            close(fd);
        }
    }
    return 0;
}
