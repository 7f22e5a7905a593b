/* Writes into another process's memory through /proc/PID/mem:  procmem PID ADDRESS
   Prints "open: <error>" or "wrote". */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    char path[64];
    snprintf(path, sizeof path, "/proc/%s/mem", argv[1]);
    int fd = open(path, O_RDWR);
    if (fd < 0) {
        printf("open: %s\n", strerror(errno));
        return 1;
    }
    unsigned long address = strtoul(argv[2], NULL, 0);
    if (pwrite(fd, "evil", 4, (off_t)address) != 4) {
        printf("write: %s\n", strerror(errno));
        return 1;
    }
    printf("wrote\n");
    return 0;
}
