/* execveat(2) forms: "dirfd DIR NAME", "emptypath FILE", "memfd FILE" (fexecve of a copy). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

static int execat(int dirfd, const char *path, int flags) {
    char *argv[] = {"payload", "from-execveat", NULL};
    return (int)syscall(SYS_execveat, dirfd, path, argv, environ, flags);
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int fd = -1;
    if (strcmp(argv[1], "dirfd") == 0 && argc == 4) {
        fd = open(argv[2], O_PATH | O_DIRECTORY);
        execat(fd, argv[3], 0);
    } else if (strcmp(argv[1], "emptypath") == 0) {
        fd = open(argv[2], O_PATH);
        execat(fd, "", AT_EMPTY_PATH);
    } else if (strcmp(argv[1], "memfd") == 0) {
        int src = open(argv[2], O_RDONLY);
        struct stat st;
        fstat(src, &st);
        fd = memfd_create("payload", 0);
        sendfile(fd, src, NULL, st.st_size);
        execat(fd, "", AT_EMPTY_PATH);
    } else {
        return 2;
    }
    printf("execveat failed: %s\n", strerror(errno));
    return 1;
}
