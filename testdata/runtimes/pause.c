/* The sandbox's PID 1 for the containerd tests: sleeps until SIGTERM or
 * SIGINT, then exits 0, so StopPodSandbox is quick. Built by the test with
 * `gcc -static` and packed into a local OCI image (no registry). */
#include <signal.h>
#include <unistd.h>

static void done(int sig) { (void)sig; _exit(0); }

int main(void) {
    signal(SIGTERM, done);
    signal(SIGINT, done);
    for (;;) pause();
    return 0;
}
