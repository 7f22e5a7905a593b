/* The rewrite race. Each try forks a process that execs path A ("..../xa", allowed) with argv
   "safe" while memory it shares is flipped to path B ("..../xb") or argv "evil":
     race thread|vfork path|argv TRIES BASE
   thread: the exec'ing process flips its own memory from a second thread.
   vfork:  a CLONE_VM|CLONE_VFORK child execs while a thread of the parent flips.
   Prints one line per try: the try's wait status. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static char path[4096];
static char arg[8] = "safe";
static char *exec_argv[] = {path, arg, NULL};
static volatile int flip_path, stop, hold;

static void *flipper(void *unused) {
    (void)unused;
    size_t last = strlen(path) - 1;
    while (!stop) {
        /* Mostly the allowed value, with short windows of the forbidden one. */
        for (volatile int i = 0; i < hold; i++) {}
        if (flip_path) path[last] = 'b'; else memcpy(arg, "evil", 4);
        for (volatile int i = 0; i < hold / 8 + 1; i++) {}
        if (flip_path) path[last] = 'a'; else memcpy(arg, "safe", 4);
    }
    return NULL;
}

static int one_try_thread(void) {
    pid_t pid = fork();
    if (pid == 0) {
        pthread_t t;
        pthread_create(&t, NULL, flipper, NULL);
        execve(path, exec_argv, environ);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

static int child_exec(void *unused) {
    (void)unused;
    execve(path, exec_argv, environ);
    _exit(127);
}

static int one_try_vfork(void) {
    static char stack[65536];
    pthread_t t;
    stop = 0;
    pthread_create(&t, NULL, flipper, NULL);
    pid_t pid = clone(child_exec, stack + sizeof stack, CLONE_VM | CLONE_VFORK | SIGCHLD, NULL);
    stop = 1;
    pthread_join(t, NULL);
    memcpy(arg, "safe", 4);
    path[strlen(path) - 1] = 'a';
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

int main(int argc, char **argv) {
    if (argc != 5) return 2;
    int vfork_mode = strcmp(argv[1], "vfork") == 0;
    flip_path = strcmp(argv[2], "path") == 0;
    int tries = atoi(argv[3]);
    snprintf(path, sizeof path, "%s/xa", argv[4]);
    for (int n = 0; n < tries; n++) {
        hold = 2000 + (n * 7919) % 200000;
        int status = vfork_mode ? one_try_vfork() : one_try_thread();
        printf("try %d status %d\n", n, status);
        fflush(stdout);
    }
    return 0;
}
