/* The pod sandbox's process: holds the pod's namespaces, reaps orphans, and
 * exits on SIGINT/SIGTERM. Static, in an image FROM scratch (no registry here
 * serves the upstream pause image). */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  signal(SIGINT, quit);
  signal(SIGTERM, quit);
  signal(SIGCHLD, reap);
  for (;;) pause();
}
