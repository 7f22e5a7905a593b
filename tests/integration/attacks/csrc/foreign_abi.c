/* Exec through a foreign syscall ABI: "int80" (i386 execve, nr 11) or "x32" (59 | x32 bit).
   Built -m64; a -m32 build with mode "native" makes every one of its syscalls foreign. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

static char *target_argv[] = {"target", NULL};

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *mode = argv[1];
    const char *target = argv[2];
    target_argv[0] = (char *)target;
    if (strcmp(mode, "native") == 0) {
        /* In a -m32 build this open is already an i386 syscall. */
        int fd = open(getenv("MARKER"), O_WRONLY | O_CREAT, 0644);
        if (fd >= 0) write(fd, "ran\n", 4);
        execv(target, target_argv);
        return 3;
    }
#if defined(__x86_64__)
    if (strcmp(mode, "int80") == 0) {
        /* The pointers must fit in 32 bits for the i386 ABI; a static string in a non-PIE
           build does, and the filter kills the process before the kernel looks anyway. */
        long ret;
        __asm__ volatile("int $0x80" : "=a"(ret) : "a"(11), "b"(target), "c"(0), "d"(0)
                         : "memory");
        printf("survived %ld\n", ret);
        return 4;
    }
    if (strcmp(mode, "x32") == 0) {
        long ret = syscall(59 | 0x40000000, target, target_argv, NULL);
        printf("survived %ld\n", ret);
        return 4;
    }
#endif
    return 2;
}
