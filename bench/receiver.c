// Benchmark receiver: listens on 127.0.0.1:<port> (0 = any free port, printed first as
// {"port":N}), then accepts connections one after another forever. For each it recv()s into
// one reused 1 MiB buffer until EOF, answers the 8-byte little-endian byte count, closes, and
// prints one JSON line: {"bytes":..,"secs":..,"cpu":..}. It must never be the bottleneck.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, (void *)&a, sizeof a) || listen(ls, 16)) { perror("bind/listen"); return 1; }
  socklen_t len = sizeof a;
  getsockname(ls, (void *)&a, &len);
  printf("{\"port\":%d}\n", ntohs(a.sin_port));
  fflush(stdout);
  static char buf[1 << 20];
  for (;;) {
    int s = accept(ls, NULL, NULL);
    if (s < 0) continue;
    double t0 = now(), c0 = cpu();
    uint64_t total = 0;
    for (;;) {
      ssize_t n = recv(s, buf, sizeof buf, 0);
      if (n <= 0) break;
      total += (uint64_t)n;
    }
    double secs = now() - t0, used = cpu() - c0;
    ssize_t w = send(s, &total, 8, MSG_NOSIGNAL);
    (void)w;
    close(s);
    printf("{\"bytes\":%llu,\"secs\":%.6f,\"cpu\":%.6f}\n", (unsigned long long)total, secs, used);
    fflush(stdout);
  }
}
