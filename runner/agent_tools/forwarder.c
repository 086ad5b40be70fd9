/*
 * forwarder LISTEN_PORT UNIX_SOCKET_PATH
 *
 * Inside a sandbox with no network, the agent CLIs can only speak HTTP over TCP, while the model
 * API is a Unix socket the runner bind-mounts in. This relays every connection accepted on
 * 127.0.0.1:LISTEN_PORT to a new connection to UNIX_SOCKET_PATH, bytes both ways, passing on
 * each side's end of stream (half-close) so request/response protocols finish cleanly.
 *
 * One process, one poll loop: no threads or forks to count against the sandbox's pid limit.
 * Memory is fixed: MAX_CONNS pairs of BUF_SIZE buffers, allocated statically. The address is
 * always the loopback one and never parsed, so nothing can make it listen elsewhere or resolve
 * a name. SIGTERM or SIGINT closes everything and exits with status 0.
 */
#define _GNU_SOURCE /* accept4, ppoll */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_CONNS 128
#define BUF_SIZE (16 * 1024)

/* One direction of a connection: bytes read from `from` wait in buf until written to `to`. */
struct half {
    int from, to;
    size_t len, off; /* buf[off..len) is still to be written */
    int eof;         /* `from` reached end of stream */
    int shut;        /* `to` was told so with shutdown(SHUT_WR) */
    char buf[BUF_SIZE];
};

struct conn {
    int used;
    struct half up;   /* TCP client -> Unix socket */
    struct half down; /* Unix socket -> TCP client */
};

static struct conn conns[MAX_CONNS];
static volatile sig_atomic_t stopping;

static void on_signal(int sig) { (void)sig; stopping = 1; }

static void die(const char *what) { perror(what); exit(1); }

static int set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* Only a plain decimal 1..65535: "0.0.0.0:80" or "localhost" are refused, not interpreted. */
static int parse_port(const char *text) {
    long port;
    if (!*text || strspn(text, "0123456789") != strlen(text) || strlen(text) > 5)
        return -1;
    port = strtol(text, NULL, 10);
    return port >= 1 && port <= 65535 ? (int)port : -1;
}

static int open_unix(const struct sockaddr_un *addr) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    /* A blocking connect: the server is the runner's own socket on this host, and a Unix
     * connect only waits while its backlog is full. Non-blocking afterwards, for the loop. */
    if (fd < 0 || connect(fd, (const struct sockaddr *)addr, sizeof *addr) < 0 ||
        set_nonblocking(fd) < 0) {
        perror("forwarder: connect to the Unix socket");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static void close_conn(struct conn *c) {
    close(c->up.from);
    close(c->up.to);
    c->used = 0;
}

static int half_done(const struct half *h) { return h->eof && h->off == h->len; }

/* Move what can be moved without blocking; -1 when the connection is broken. */
static int pump(struct half *h, short from_events, short to_events) {
    ssize_t n;
    if (h->off == h->len && !h->eof && (from_events & (POLLIN | POLLHUP | POLLERR))) {
        n = recv(h->from, h->buf, sizeof h->buf, 0);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        h->off = 0;
        h->len = (size_t)n;
        h->eof = n == 0;
    }
    if (h->off < h->len && (to_events & (POLLOUT | POLLHUP | POLLERR))) {
        /* MSG_NOSIGNAL: a peer that went away is an error to handle, not a fatal SIGPIPE. */
        n = send(h->to, h->buf + h->off, h->len - h->off, MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        h->off += (size_t)n;
    }
    if (half_done(h) && !h->shut) {
        shutdown(h->to, SHUT_WR);
        h->shut = 1;
    }
    return 0;
}

/* The events one half waits for on each of its ends. */
static short wants_from(const struct half *h) { return h->off == h->len && !h->eof ? POLLIN : 0; }
static short wants_to(const struct half *h) { return h->off < h->len ? POLLOUT : 0; }

int main(int argc, char **argv) {
    struct sockaddr_in listen_addr = {0};
    struct sockaddr_un unix_addr = {0};
    struct pollfd fds[1 + 2 * MAX_CONNS];
    struct sigaction sa = {0};
    sigset_t blocked, unblocked;
    int port, listener, one = 1, i;

    if (argc != 3 || (port = parse_port(argv[1])) < 0 || !argv[2][0]) {
        fprintf(stderr, "usage: forwarder LISTEN_PORT UNIX_SOCKET_PATH\n"
                        "listens on 127.0.0.1:LISTEN_PORT only (1-65535)\n");
        return 2;
    }
    if (strlen(argv[2]) >= sizeof unix_addr.sun_path) {
        fprintf(stderr, "forwarder: socket path longer than %zu bytes\n", sizeof unix_addr.sun_path - 1);
        return 2;
    }
    unix_addr.sun_family = AF_UNIX;
    strcpy(unix_addr.sun_path, argv[2]);

    /* Signals stay blocked except inside ppoll, so a SIGTERM is never lost between the
     * `stopping` check and the wait. */
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGINT);
    sigprocmask(SIG_BLOCK, &blocked, &unblocked);
    sigdelset(&unblocked, SIGTERM);
    sigdelset(&unblocked, SIGINT);

    listen_addr.sin_family = AF_INET;
    listen_addr.sin_port = htons((unsigned short)port);
    listen_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0)
        die("forwarder: socket");
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listener, (struct sockaddr *)&listen_addr, sizeof listen_addr) < 0)
        die("forwarder: bind 127.0.0.1");
    if (listen(listener, 64) < 0 || set_nonblocking(listener) < 0)
        die("forwarder: listen");
    fprintf(stderr, "forwarder: 127.0.0.1:%d -> %s\n", port, argv[2]);

    while (!stopping) {
        int free_slot = -1, nfds = 1;
        /* At MAX_CONNS, new connections wait in the kernel's backlog until one closes. */
        for (i = 0; i < MAX_CONNS; i++)
            if (!conns[i].used) { free_slot = i; break; }
        fds[0].fd = free_slot >= 0 ? listener : -1;
        fds[0].events = POLLIN;
        for (i = 0; i < MAX_CONNS; i++) {
            struct conn *c = &conns[i];
            /* An fd with nothing to wait for is left out (-1): poll would report its hang-up
             * again and again. fds[1 + 2i] is the TCP end, fds[2 + 2i] the Unix end. */
            short tcp = c->used ? wants_from(&c->up) | wants_to(&c->down) : 0;
            short uds = c->used ? wants_from(&c->down) | wants_to(&c->up) : 0;
            fds[1 + 2 * i] = (struct pollfd){.fd = tcp ? c->up.from : -1, .events = tcp};
            fds[2 + 2 * i] = (struct pollfd){.fd = uds ? c->up.to : -1, .events = uds};
            if (c->used)
                nfds = 3 + 2 * i;
        }
        if (ppoll(fds, (nfds_t)nfds, NULL, &unblocked) < 0) {
            if (errno == EINTR)
                continue;
            die("forwarder: poll");
        }
        for (i = 0; i < MAX_CONNS; i++) {
            struct conn *c = &conns[i];
            short tcp = fds[1 + 2 * i].revents, uds = fds[2 + 2 * i].revents;
            if (!c->used || (!tcp && !uds))
                continue;
            if (pump(&c->up, tcp, uds) < 0 || pump(&c->down, uds, tcp) < 0 ||
                (half_done(&c->up) && half_done(&c->down)))
                close_conn(c);
        }
        if (free_slot >= 0 && (fds[0].revents & POLLIN)) {
            int client = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), server;
            if (client < 0)
                continue; /* EAGAIN, or a client that gave up already */
            server = open_unix(&unix_addr);
            if (server < 0) {
                close(client); /* the client sees the connection closed, as with no server */
                continue;
            }
            conns[free_slot] = (struct conn){
                .used = 1,
                .up = {.from = client, .to = server},
                .down = {.from = server, .to = client},
            };
        }
    }
    for (i = 0; i < MAX_CONNS; i++)
        if (conns[i].used)
            close_conn(&conns[i]);
    close(listener);
    return 0;
}
