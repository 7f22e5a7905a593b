/* A sibling to tamper with: prints the address of its buffer, then after a second whether the
   buffer still says "safe". */
#include <stdio.h>
#include <unistd.h>
#include <string.h>

static char buffer[8] = "safe";

int main(void) {
    printf("%p\n", (void *)buffer);
    fflush(stdout);
    sleep(2);
    printf("%s\n", strcmp(buffer, "safe") == 0 ? "intact" : "rewritten");
    return 0;
}
