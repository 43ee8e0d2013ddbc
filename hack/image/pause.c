/*
 * The pod sandbox's process for the test node (test/harness/node/pause-image.ts): it holds the pod's
 * namespaces, reaps the zombies of any process that dies inside them (it is pid 1 there), and exits at
 * once on SIGTERM or SIGINT. It is built static so that its image needs nothing else: FROM scratch.
 * Written after the role of Kubernetes' own build/pause/linux/pause.c; the kubelet needs only this much.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int signo) {
  (void)signo;
  /* _exit: nothing to flush, and async-signal-safe, unlike exit(). */
  _exit(0);
}

static void on_child(int signo) {
  (void)signo;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    puts("basecache-pause");
    return 0;
  }
  if (getpid() != 1) fputs("pause: warning: not pid 1, so orphans are not reaped here\n", stderr);

  struct sigaction stop = {.sa_handler = on_stop};
  sigemptyset(&stop.sa_mask);
  if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0) return 1;

  struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP};
  sigemptyset(&child.sa_mask);
  if (sigaction(SIGCHLD, &child, NULL) < 0) return 2;

  for (;;) pause();
  return 42; /* not reached */
}
