/* The baseline for core.proc.run: fork, exec /bin/true, waitpid, in a plain loop.
 * Prints the median of 5 runs in microseconds per spawn. Usage: forkexec [count] */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 300;
  double runs[5];
  for (int r = 0; r < 5; r++) {
    double t0 = now();
    for (int i = 0; i < n; i++) {
      pid_t pid = fork();
      if (pid < 0) { perror("fork"); return 1; }
      if (pid == 0) {
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
      }
      int st;
      if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "child failed\n");
        return 1;
      }
    }
    runs[r] = (now() - t0) * 1e6 / n;
  }
  double sorted[5];
  for (int i = 0; i < 5; i++) sorted[i] = runs[i];
  qsort(sorted, 5, sizeof sorted[0], cmp);
  printf("%.1f\n", sorted[2]);
  return 0;
}
