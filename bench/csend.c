// Reference C senders for the benchmark harness (the loopback anchors this project measured
// its goals against). Built by bench/harness.ts with liburing from Debian; not part of the package.
// csend: TCP loopback sender variants.
// usage: csend <mode> <port> <chunk> <total> [qd] [nslots] [file]
//  modes:
//   send         blocking send() loop (handles short sends)
//   send_nb      non-blocking send() + poll(POLLOUT) on EAGAIN (libuv-like)
//   uring        IORING_OP_SEND, MSG_WAITALL; qd sends per linked batch (IOSQE_IO_LINK)
//   uring_nolink same but batch NOT linked (order NOT guaranteed; for verify demo only)
//   zc           IORING_OP_SEND_ZC + REPORT_USAGE, MSG_WAITALL, linked batch of qd;
//                a slot is reused only after its send CQE (F_MORE) AND its NOTIF CQE
//   zcfix        same with registered buffer (io_uring_prep_send_zc_fixed)
//   sendfile     sendfile(2) from <file> (page cached), <chunk> bytes per call
//   splice       splice(2) file->pipe->socket
//   splice_uring IORING_OP_SPLICE file->pipe (IO_LINK) ->socket, one pair in flight
//   mkfile       write <total> bytes of pattern to <file> (port/chunk ignored)
// Payload pattern: uint64 word at stream offset o == o % period, period = nslots*chunk
// (file modes: period = file size).  Env UR_DEFER=1 -> SINGLE_ISSUER|DEFER_TASKRUN.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}
static void rus(double *u, double *s) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  *u = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
  *s = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}
#define DIE(...) do { fprintf(stderr, __VA_ARGS__); fprintf(stderr, " errno=%d (%s)\n", errno, strerror(errno)); exit(1); } while (0)

static double deadline;
static void check_deadline(void) { if (now() > deadline) { fprintf(stderr, "deadline exceeded\n"); exit(4); } }

static void fill_pattern(uint8_t *p, size_t len, uint64_t base) {
  for (size_t i = 0; i + 8 <= len; i += 8) { uint64_t w = base + i; memcpy(p + i, &w, 8); }
}

static int connect_retry(int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < 400; i++) {  // <= ~4 s
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s, (void *)&a, sizeof a) == 0) return s;
    close(s);
    usleep(10000);
  }
  DIE("connect");
}

// ---------------- io_uring send / send_zc engine ----------------
static uint64_t notifs, copied, notif_nonzero_res;
static void run_uring(int sock, uint8_t *region, size_t chunk, uint64_t total, int qd, int nslots,
                      int zc, int fixed, int link) {
  struct io_uring ring;
  struct io_uring_params p = {0};
  if (getenv("UR_DEFER")) p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  int r = io_uring_queue_init_params(256, &ring, &p);
  if (r) { errno = -r; DIE("queue_init"); }
  if (fixed) {
    struct iovec iov = {region, (size_t)nslots * chunk};
    r = io_uring_register_buffers(&ring, &iov, 1);
    if (r) { errno = -r; DIE("register_buffers"); }
  }
  char *busy = calloc(nslots, 1);  // 1 = waiting for NOTIF
  int outstanding_notifs = 0;
  uint64_t nchunks = total / chunk, seq = 0;
  unsigned zcf = IORING_SEND_ZC_REPORT_USAGE;
  // reap one CQE (blocking); returns 1 if it was a send completion
  #define REAP_ONE() ({                                                          \
    struct io_uring_cqe *cqe; int _r = io_uring_wait_cqe(&ring, &cqe);           \
    if (_r) { errno = -_r; DIE("wait_cqe"); }                                     \
    int _slot = (int)(cqe->user_data & 0xffffffff), _is_send = 0;                 \
    if (cqe->flags & IORING_CQE_F_NOTIF) {                                        \
      notifs++; if ((uint32_t)cqe->res & IORING_NOTIF_USAGE_ZC_COPIED) copied++;  \
      if (cqe->res) notif_nonzero_res++;                                          \
      busy[_slot] = 0; outstanding_notifs--;                                      \
    } else {                                                                      \
      if (cqe->res != (int)chunk) {                                               \
        fprintf(stderr, "send res=%d (%s) expected %zu\n", cqe->res,              \
                cqe->res < 0 ? strerror(-cqe->res) : "short", chunk); exit(1); }  \
      if (zc && (cqe->flags & IORING_CQE_F_MORE)) { busy[_slot] = 1; outstanding_notifs++; } \
      _is_send = 1;                                                               \
    }                                                                             \
    io_uring_cqe_seen(&ring, cqe); _is_send; })
  while (seq < nchunks) {
    check_deadline();
    int batch = qd;
    if ((uint64_t)batch > nchunks - seq) batch = (int)(nchunks - seq);
    for (int j = 0; j < batch; j++) {
      int slot = (int)((seq + j) % nslots);
      while (busy[slot]) REAP_ONE();
    }
    for (int j = 0; j < batch; j++) {
      int slot = (int)((seq + j) % nslots);
      struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
      uint8_t *buf = region + (size_t)slot * chunk;
      if (!zc) io_uring_prep_send(sqe, sock, buf, chunk, MSG_WAITALL);
      else if (!fixed) io_uring_prep_send_zc(sqe, sock, buf, chunk, MSG_WAITALL, zcf);
      else io_uring_prep_send_zc_fixed(sqe, sock, buf, chunk, MSG_WAITALL, zcf, 0);
      sqe->user_data = (uint64_t)slot;
      if (link && j < batch - 1) sqe->flags |= IOSQE_IO_LINK;
    }
    io_uring_submit(&ring);
    int done = 0;
    while (done < batch) done += REAP_ONE();
    seq += batch;
  }
  while (outstanding_notifs > 0) { check_deadline(); REAP_ONE(); }
  io_uring_queue_exit(&ring);
}

// ---------------- splice via io_uring ----------------
static void run_splice_uring(int sock, int fd, off_t fsize, size_t chunk, uint64_t total) {
  int pfd[2];
  if (pipe(pfd)) DIE("pipe");
  if (fcntl(pfd[1], F_SETPIPE_SZ, (int)(chunk < 65536 ? 65536 : chunk)) < 0) DIE("F_SETPIPE_SZ");
  struct io_uring ring;
  int r = io_uring_queue_init(8, &ring, 0);
  if (r) { errno = -r; DIE("queue_init"); }
  uint64_t sent = 0; off_t off = 0;
  while (sent < total) {
    check_deadline();
    if (off >= fsize) off = 0;
    size_t len = chunk;
    struct io_uring_sqe *a = io_uring_get_sqe(&ring);
    io_uring_prep_splice(a, fd, off, pfd[1], -1, len, 0);
    a->flags |= IOSQE_IO_LINK; a->user_data = 1;
    struct io_uring_sqe *b = io_uring_get_sqe(&ring);
    io_uring_prep_splice(b, pfd[0], -1, sock, -1, len, 0);
    b->user_data = 2;
    io_uring_submit(&ring);
    int in = -1, out = -1;
    for (int k = 0; k < 2; k++) {
      struct io_uring_cqe *cqe;
      r = io_uring_wait_cqe(&ring, &cqe);
      if (r) { errno = -r; DIE("wait_cqe"); }
      if (cqe->user_data == 1) in = cqe->res; else out = cqe->res;
      io_uring_cqe_seen(&ring, cqe);
    }
    if (in <= 0) { fprintf(stderr, "splice in res=%d\n", in); exit(1); }
    long pending = in - (out > 0 ? out : 0);
    while (pending > 0) {  // short in or short out: drain the pipe
      struct io_uring_sqe *c = io_uring_get_sqe(&ring);
      io_uring_prep_splice(c, pfd[0], -1, sock, -1, pending, 0);
      io_uring_submit(&ring);
      struct io_uring_cqe *cqe;
      io_uring_wait_cqe(&ring, &cqe);
      int res = cqe->res; io_uring_cqe_seen(&ring, cqe);
      if (res <= 0) { fprintf(stderr, "splice out res=%d\n", res); exit(1); }
      pending -= res;
    }
    off += in; sent += in;
  }
  io_uring_queue_exit(&ring);
}

int main(int argc, char **argv) {
  if (argc < 5) { fprintf(stderr, "usage: csend mode port chunk total [qd] [nslots] [file]\n"); return 2; }
  const char *mode = argv[1];
  int port = atoi(argv[2]);
  size_t chunk = strtoull(argv[3], 0, 10);
  uint64_t total = strtoull(argv[4], 0, 10);
  int qd = argc > 5 ? atoi(argv[5]) : 1;
  int nslots = argc > 6 ? atoi(argv[6]) : 1;
  const char *file = argc > 7 ? argv[7] : "data.bin";
  deadline = now() + 100;
  alarm(110);
  if (nslots < qd) nslots = qd;

  if (!strcmp(mode, "mkfile")) {
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) DIE("open");
    size_t B = 1 << 20; uint8_t *b = malloc(B);
    for (uint64_t o = 0; o < total; o += B) { fill_pattern(b, B, o); if (write(fd, b, B) != (ssize_t)B) DIE("write"); }
    close(fd);
    return 0;
  }
  int isfile = !strcmp(mode, "sendfile") || !strncmp(mode, "splice", 6);
  int fd = -1; off_t fsize = 0;
  uint8_t *region = NULL;
  if (isfile) {
    fd = open(file, O_RDONLY);
    if (fd < 0) DIE("open %s", file);
    struct stat st; fstat(fd, &st); fsize = st.st_size;
    if (fsize % chunk) { fprintf(stderr, "file size must be multiple of chunk\n"); return 2; }
  } else {
    size_t rl = (size_t)nslots * chunk;
    region = aligned_alloc(4096, rl);
    fill_pattern(region, rl, 0);
  }
  if (total % chunk) { fprintf(stderr, "total must be multiple of chunk\n"); return 2; }
  int sock = connect_retry(port);
  double t0 = now(), u0, s0, u1, s1;
  rus(&u0, &s0);

  if (!strcmp(mode, "send")) {
    uint64_t sent = 0, i = 0;
    while (sent < total) {
      if ((i++ & 1023) == 0) check_deadline();
      uint8_t *buf = region + (size_t)((sent / chunk) % nslots) * chunk;
      size_t off = 0;
      while (off < chunk) {
        ssize_t n = send(sock, buf + off, chunk - off, 0);
        if (n < 0) { if (errno == EINTR) continue; DIE("send"); }
        off += n;
      }
      sent += chunk;
    }
  } else if (!strcmp(mode, "send_nb")) {  // non-blocking send() + poll(POLLOUT), like libuv
    fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) | O_NONBLOCK);
    uint64_t sent = 0, i = 0;
    while (sent < total) {
      if ((i++ & 1023) == 0) check_deadline();
      uint8_t *buf = region + (size_t)((sent / chunk) % nslots) * chunk;
      size_t off = 0;
      while (off < chunk) {
        ssize_t n = send(sock, buf + off, chunk - off, 0);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN) { struct pollfd pf = {sock, POLLOUT, 0}; poll(&pf, 1, 1000); continue; }
          DIE("send");
        }
        off += n;
      }
      sent += chunk;
    }
    fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) & ~O_NONBLOCK);
  } else if (!strcmp(mode, "uring")) {
    run_uring(sock, region, chunk, total, qd, nslots, 0, 0, 1);
  } else if (!strcmp(mode, "uring_nolink")) {
    run_uring(sock, region, chunk, total, qd, nslots, 0, 0, 0);
  } else if (!strcmp(mode, "zc")) {
    run_uring(sock, region, chunk, total, qd, nslots, 1, 0, 1);
  } else if (!strcmp(mode, "zcfix")) {
    run_uring(sock, region, chunk, total, qd, nslots, 1, 1, 1);
  } else if (!strcmp(mode, "sendfile")) {
    uint64_t sent = 0, i = 0; off_t off = 0;
    while (sent < total) {
      if ((i++ & 1023) == 0) check_deadline();
      if (off >= fsize) off = 0;
      ssize_t n = sendfile(sock, fd, &off, chunk);
      if (n <= 0) { if (n < 0 && errno == EINTR) continue; DIE("sendfile"); }
      sent += n;
    }
  } else if (!strcmp(mode, "splice")) {
    int pfd[2];
    if (pipe(pfd)) DIE("pipe");
    if (fcntl(pfd[1], F_SETPIPE_SZ, (int)(chunk < 65536 ? 65536 : chunk)) < 0) DIE("F_SETPIPE_SZ");
    uint64_t sent = 0, i = 0; loff_t off = 0;
    while (sent < total) {
      if ((i++ & 1023) == 0) check_deadline();
      if (off >= fsize) off = 0;
      ssize_t in = splice(fd, &off, pfd[1], NULL, chunk, SPLICE_F_MOVE);
      if (in <= 0) DIE("splice in");
      ssize_t left = in;
      while (left > 0) {
        ssize_t o = splice(pfd[0], NULL, sock, NULL, left, SPLICE_F_MOVE);
        if (o <= 0) DIE("splice out");
        left -= o;
      }
      sent += in;
    }
  } else if (!strcmp(mode, "splice_uring")) {
    run_splice_uring(sock, fd, fsize, chunk, total);
  } else {
    fprintf(stderr, "unknown mode %s\n", mode); return 2;
  }
  // end of stream, wait for receiver's 8-byte count
  shutdown(sock, SHUT_WR);
  uint64_t ack = 0; size_t got = 0;
  while (got < 8) {
    ssize_t n = recv(sock, (char *)&ack + got, 8 - got, 0);
    if (n <= 0) DIE("ack recv");
    got += n;
  }
  double t1 = now();
  rus(&u1, &s1);
  printf("tx_mode=%s tx_chunk=%zu tx_qd=%d tx_slots=%d tx_secs=%.4f tx_cpu_user=%.3f tx_cpu_sys=%.3f ack_ok=%d notifs=%llu zc_copied=%llu notif_res_nonzero=%llu\n",
         mode, chunk, qd, nslots, t1 - t0, u1 - u0, s1 - s0, ack == total,
         (unsigned long long)notifs, (unsigned long long)copied, (unsigned long long)notif_nonzero_res);
  return ack == total ? 0 : 3;
}
