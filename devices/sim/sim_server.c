/* Single-threaded epoll Modbus server for the simulator (see sim_server.h). */
#include "sim_server.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "alloc.h"
#include "error.h"
#include "log.h"
#include "sim_frame.h"
#include "timeutil.h"

#define AREA "sim-server"
#define RTU_GAP_MS 20        /* idle time that ends an RTU frame of unknown length */
#define RTU_REOPEN_MS 1000
#define IN_CAP (2 * SIM_ADU_MAX)

typedef enum { EP_LISTEN = 0, EP_TCP, EP_RTU } ep_type;

typedef struct out_msg {
    struct out_msg *next;
    size_t len, off;
    int64_t due_ms;           /* monotonic ms before which nothing of it is sent */
    int drip_ms;              /* > 0: one byte per drip_ms */
    uint8_t data[];
} out_msg;

struct sim_port;

typedef struct sim_ep {
    ep_type type;
    int fd;
    struct sim_port *port;
    uint8_t in[IN_CAP];
    size_t in_len;
    int64_t in_last_ms;       /* RTU: time of the last byte received */
    out_msg *oq_head, *oq_tail;
    int want_out;             /* EPOLLOUT armed */
    struct sim_ep *tprev, *tnext; /* in the server's timed list */
    int timed;
    struct sim_ep *cprev, *cnext; /* EP_TCP: in the server's connection list */
} sim_ep;

/* One TCP endpoint (host:port) or one RTU line: the devices by unit id. */
typedef struct sim_port {
    int is_rtu;
    char label[160];          /* "127.0.0.1:5020 (field-tcp)" or "/dev/pts/3 (field-rtu)" */
    char host[128];
    int portno;
    const gw_bus *bus;        /* RTU: the bus; TCP: the first bus on the endpoint */
    char *path;               /* RTU */
    sim_device *unit[256];
    sim_ep *ep;               /* listener or the RTU line (NULL while the pty is gone) */
    int64_t reopen_ms;        /* RTU: next reopen attempt, 0 = none */
} sim_port;

struct sim_server {
    sim_model *model;
    int epfd;
    int unknown_unit_silent;
    sim_port *ports;
    size_t n_ports;
    sim_ep *timed;            /* endpoints with timed output or an open RTU frame */
    sim_ep *conns_list;       /* every open TCP connection */
    uint64_t conns, conns_open, requests, answers, exceptions, dropped, bad_frames;
};

/* ---- timed list --------------------------------------------------------------------- */

static void timed_add(sim_server *s, sim_ep *e)
{
    if (e->timed)
        return;
    e->timed = 1;
    e->tprev = NULL;
    e->tnext = s->timed;
    if (s->timed)
        s->timed->tprev = e;
    s->timed = e;
}

static void timed_del(sim_server *s, sim_ep *e)
{
    if (!e->timed)
        return;
    if (e->tprev)
        e->tprev->tnext = e->tnext;
    else
        s->timed = e->tnext;
    if (e->tnext)
        e->tnext->tprev = e->tprev;
    e->timed = 0;
    e->tprev = e->tnext = NULL;
}

/* ---- endpoints ------------------------------------------------------------------------ */

/* A new endpoint for fd, registered for input. On failure fd is closed and NULL returned. */
static sim_ep *ep_add(sim_server *s, int fd, ep_type type, struct sim_port *port)
{
    sim_ep *e = gw_calloc(1, sizeof *e);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = e};
    if (!e || epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        gw_free(e);
        close(fd);
        return NULL;
    }
    e->type = type;
    e->fd = fd;
    e->port = port;
    return e;
}

static int ep_arm(sim_server *s, sim_ep *e, int out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = e};
    if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, e->fd, &ev) != 0)
        return GW_EIO;
    e->want_out = out;
    return 0;
}

static void ep_free_queue(sim_ep *e)
{
    while (e->oq_head) {
        out_msg *m = e->oq_head;
        e->oq_head = m->next;
        gw_free(m);
    }
    e->oq_tail = NULL;
}

static void ep_close(sim_server *s, sim_ep *e)
{
    timed_del(s, e);
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, e->fd, NULL);
    close(e->fd);
    ep_free_queue(e);
    if (e->type == EP_TCP) {
        s->conns_open--;
        if (e->cprev)
            e->cprev->cnext = e->cnext;
        else
            s->conns_list = e->cnext;
        if (e->cnext)
            e->cnext->cprev = e->cprev;
    }
    if (e->type == EP_RTU && e->port) {
        e->port->ep = NULL;
        e->port->reopen_ms = gw_mono_ms() + RTU_REOPEN_MS;
    }
    gw_free(e);
}

/* Send what is due. Returns 0, or GW_EIO when the endpoint failed (caller closes). */
static int ep_flush(sim_server *s, sim_ep *e, int64_t now)
{
    while (e->oq_head) {
        out_msg *m = e->oq_head;
        if (m->due_ms > now) {
            timed_add(s, e);
            return 0;
        }
        size_t n = m->drip_ms > 0 ? 1 : m->len - m->off;
        ssize_t w = e->type == EP_TCP ? send(e->fd, m->data + m->off, n, MSG_NOSIGNAL)
                                      : write(e->fd, m->data + m->off, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return e->want_out ? 0 : ep_arm(s, e, 1);
            return GW_EIO;
        }
        m->off += (size_t)w;
        if (m->off < m->len) {
            if (m->drip_ms > 0)
                m->due_ms = now + m->drip_ms;
            continue;
        }
        e->oq_head = m->next;
        if (!e->oq_head)
            e->oq_tail = NULL;
        gw_free(m);
    }
    if (e->type != EP_RTU || e->in_len == 0)
        timed_del(s, e);
    if (e->want_out)
        return ep_arm(s, e, 0);
    return 0;
}

static int ep_queue(sim_server *s, sim_ep *e, const uint8_t *data, size_t len, int delay_ms,
                    int drip_ms)
{
    out_msg *m = gw_malloc(sizeof *m + len);
    if (!m)
        return GW_ENOMEM;
    memcpy(m->data, data, len);
    m->len = len;
    m->off = 0;
    m->next = NULL;
    int64_t now = gw_mono_ms();
    m->due_ms = now + delay_ms;
    m->drip_ms = drip_ms;
    if (e->oq_tail)
        e->oq_tail->next = m;
    else
        e->oq_head = m;
    e->oq_tail = m;
    return ep_flush(s, e, now);
}

/* ---- answering ---------------------------------------------------------------------- */

/* Corrupt a finished answer the way the device's scenario asks. pdu is the response
 * PDU in place (inside adu); returns the ADU length. */
static size_t malform(const sim_device *d, int rtu, uint8_t *adu, size_t len)
{
    uint8_t *pdu = rtu ? adu + 1 : adu + SIM_MBAP_HDR;
    size_t pdu_len = rtu ? len - 3 : len - SIM_MBAP_HDR;
    switch (d->malform) {
    case SIM_MALFORM_NONE:
        break;
    case SIM_MALFORM_SHORT:
        if (pdu_len > 2)
            pdu_len--; /* the byte count now promises one byte more than follows */
        break;
    case SIM_MALFORM_LENGTH:
        if (!rtu) {
            uint16_t l = (uint16_t)((adu[4] << 8 | adu[5]) + 3);
            adu[4] = (uint8_t)(l >> 8);
            adu[5] = (uint8_t)l;
            return len;
        }
        if (pdu_len > 2)
            pdu[1] = (uint8_t)(pdu[1] + 3);
        break;
    case SIM_MALFORM_TID:
        if (!rtu) {
            adu[0] ^= 0x55;
            adu[1] ^= 0xAA;
        }
        return len;
    case SIM_MALFORM_FUNCTION:
        pdu[0] = (uint8_t)((pdu[0] & 0x80) | ((pdu[0] & 0x7F) == 0x03 ? 0x04 : 0x03));
        break;
    case SIM_MALFORM_UNIT:
        adu[rtu ? 0 : 6] = (uint8_t)(adu[rtu ? 0 : 6] + 1);
        break;
    }
    if (rtu)
        return sim_frame_rtu_build(adu, adu[0], pdu, pdu_len);
    return sim_frame_mbap_build(adu, (uint16_t)(adu[0] << 8 | adu[1]), adu[6], pdu, pdu_len);
}

static int answer(sim_server *s, sim_ep *e, const sim_frame_adu *req)
{
    sim_port *p = e->port;
    int rtu = e->type == EP_RTU;
    sim_device *d = p->unit[req->unit];
    uint8_t rsp[SIM_PDU_MAX];
    uint8_t adu[SIM_ADU_MAX + 8];
    size_t rsp_len;
    s->requests++;

    if (req->pdu_len < 1) {
        s->bad_frames++;
        return 0;
    }
    if (!d) {
        if (rtu || s->unknown_unit_silent) {
            s->dropped++;
            return 0;
        }
        rsp_len = sim_frame_exception(req->pdu[0] & 0x7F, SIM_EX_GATEWAY_TARGET, rsp);
        size_t n = sim_frame_mbap_build(adu, req->tid, req->unit, rsp, rsp_len);
        s->answers++;
        s->exceptions++;
        return ep_queue(s, e, adu, n, 0, 0);
    }
    d->requests++;
    if (d->silent) {
        d->dropped++;
        s->dropped++;
        return 0;
    }
    sim_frame_space sp = {.ctx = d, .read = sim_model_read, .write = sim_model_write};
    rsp_len = sim_frame_reply(&sp, req->pdu, req->pdu_len, rsp);
    if (rsp[0] & 0x80) {
        d->exceptions++;
        s->exceptions++;
    }
    size_t n = rtu ? sim_frame_rtu_build(adu, req->unit, rsp, rsp_len)
                   : sim_frame_mbap_build(adu, req->tid, req->unit, rsp, rsp_len);
    n = malform(d, rtu, adu, n);
    if (rtu && d->corrupt_crc) {
        adu[n - 2] ^= 0xA5;
        adu[n - 1] ^= 0x5A;
    }
    s->answers++;
    return ep_queue(s, e, adu, n, d->delay_ms, d->drip_ms);
}

/* ---- TCP -------------------------------------------------------------------------------- */

static void tcp_accept(sim_server *s, sim_ep *l)
{
    for (;;) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                static gw_complaint c = GW_COMPLAINT_INIT;
                gw_complain(&c, 0, 1000, 60000, GW_LOG_WARN, AREA, "accept on %s: %s",
                            l->port->label, strerror(errno));
            }
            return;
        }
        int one = 1;
        /* Dripped answers must leave byte by byte, not coalesced by Nagle. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        sim_ep *e = ep_add(s, fd, EP_TCP, l->port);
        if (!e)
            continue;
        e->cnext = s->conns_list;
        if (s->conns_list)
            s->conns_list->cprev = e;
        s->conns_list = e;
        s->conns++;
        s->conns_open++;
        gw_debug(AREA, "connection %d on %s", fd, l->port->label);
    }
}

/* Returns 0, or GW_EIO / GW_ECLOSED when the connection is to be closed. */
static int tcp_read(sim_server *s, sim_ep *e)
{
    for (;;) {
        ssize_t r = recv(e->fd, e->in + e->in_len, IN_CAP - e->in_len, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return GW_EIO;
        }
        if (r == 0)
            return GW_ECLOSED;
        e->in_len += (size_t)r;
        size_t off = 0;
        for (;;) {
            sim_frame_adu req;
            int n = sim_frame_mbap_parse(e->in + off, e->in_len - off, &req);
            if (n == 0)
                break;
            if (n < 0) {
                s->bad_frames++;
                static gw_complaint c = GW_COMPLAINT_INIT;
                gw_complain(&c, 0, 1000, 60000, GW_LOG_WARN, AREA,
                            "%s: bad MBAP header, closing the connection", e->port->label);
                return GW_EPROTO;
            }
            int rc = answer(s, e, &req);
            if (rc != 0)
                return rc;
            off += (size_t)n;
        }
        memmove(e->in, e->in + off, e->in_len - off);
        e->in_len -= off;
    }
}

/* ---- RTU --------------------------------------------------------------------------------- */

static int rtu_open(sim_server *s, sim_port *p)
{
    int fd = open(p->path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return GW_EIO;
    struct termios tio;
    if (tcgetattr(fd, &tio) == 0) {
        cfmakeraw(&tio);
        tio.c_cflag |= CLOCAL | CREAD;
        tcsetattr(fd, TCSANOW, &tio); /* ptys ignore speed and parity; a real port takes them */
    }
    tcflush(fd, TCIOFLUSH);
    sim_ep *e = ep_add(s, fd, EP_RTU, p);
    if (!e)
        return GW_EIO;
    p->ep = e;
    p->reopen_ms = 0;
    return 0;
}

/* Frame what is buffered: complete requests by length; at the inter-frame gap, a
 * frame of unknown function (answered with exception 01 when its CRC is good) or a
 * truncated one (dropped). */
static int rtu_frames(sim_server *s, sim_ep *e, int64_t now)
{
    size_t off = 0;
    int rc = 0;
    while (off < e->in_len && rc == 0) {
        int need = sim_frame_rtu_request_len(e->in + off, e->in_len - off);
        size_t avail = e->in_len - off;
        sim_frame_adu req;
        if (need > 0 && (size_t)need <= avail) {
            if (sim_frame_rtu_parse(e->in + off, (size_t)need, &req) == 0) {
                rc = answer(s, e, &req);
                off += (size_t)need;
            } else {
                /* Bad CRC: a real slave stays silent and resynchronises at the gap. */
                s->bad_frames++;
                off = e->in_len;
            }
            continue;
        }
        if (now - e->in_last_ms < RTU_GAP_MS)
            break;
        if (need < 0 && sim_frame_rtu_parse(e->in + off, avail, &req) == 0 && req.pdu_len >= 1) {
            rc = answer(s, e, &req);
        } else {
            s->bad_frames++;
        }
        off = e->in_len;
    }
    memmove(e->in, e->in + off, e->in_len - off);
    e->in_len -= off;
    if (e->in_len)
        timed_add(s, e);
    else if (!e->oq_head)
        timed_del(s, e);
    return rc;
}

static int rtu_read(sim_server *s, sim_ep *e)
{
    for (;;) {
        if (e->in_len == IN_CAP) { /* noise: no request is this long */
            s->bad_frames++;
            e->in_len = 0;
        }
        ssize_t r = read(e->fd, e->in + e->in_len, IN_CAP - e->in_len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return GW_EIO;
        }
        if (r == 0)
            break;
        e->in_len += (size_t)r;
        e->in_last_ms = gw_mono_ms();
    }
    return rtu_frames(s, e, gw_mono_ms());
}

/* ---- setup --------------------------------------------------------------------------------- */

static int tcp_listen(sim_server *s, sim_port *p)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char service[16];
    snprintf(service, sizeof service, "%d", p->portno);
    int g = getaddrinfo(p->host[0] ? p->host : NULL, service, &hints, &res);
    if (g != 0) {
        gw_error(AREA, "%s: cannot resolve: %s", p->label, gai_strerror(g));
        return GW_EIO;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 4096) == 0)
            break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        gw_error(AREA, "%s: cannot listen: %s", p->label, strerror(err));
        return GW_EIO;
    }
    sim_ep *e = ep_add(s, fd, EP_LISTEN, p);
    if (!e)
        return GW_EIO;
    p->ep = e;
    gw_info(AREA, "listening on %s", p->label);
    return 0;
}

static sim_port *port_for_tcp(sim_server *s, const char *host, int portno)
{
    for (size_t i = 0; i < s->n_ports; i++)
        if (!s->ports[i].is_rtu && s->ports[i].portno == portno &&
            strcmp(s->ports[i].host, host) == 0)
            return &s->ports[i];
    return NULL;
}

int sim_server_open(sim_model *m, const sim_server_opts *o, gw_cfgerr *errs, sim_server **out)
{
    const gw_config *cfg = m->cfg;
    *out = NULL;
    size_t nerr0 = errs->n;
    sim_server *s = gw_calloc(1, sizeof *s);
    if (!s)
        return GW_ENOMEM;
    s->model = m;
    s->unknown_unit_silent = o->unknown_unit_silent;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->ports = gw_calloc(cfg->n_buses ? cfg->n_buses : 1, sizeof *s->ports);
    if (s->epfd < 0 || !s->ports) {
        sim_server_close(s);
        return s->epfd < 0 ? GW_EIO : GW_ENOMEM;
    }

    for (size_t i = 0; i < o->n_ovr; i++) {
        const gw_bus *b = gw_config_bus(cfg, o->ovr[i].bus);
        if (!b || b->type != GW_BUS_TCP)
            gw_cfgerr_add(errs, "--listen-override", o->ovr[i].bus, "no TCP bus '%s' in %s",
                          o->ovr[i].bus, cfg->file);
    }
    for (size_t i = 0; i < o->n_rtu; i++) {
        const gw_bus *b = gw_config_bus(cfg, o->rtu[i].bus);
        if (!b || b->type != GW_BUS_RTU)
            gw_cfgerr_add(errs, "--rtu", o->rtu[i].bus, "no RTU bus '%s' in %s", o->rtu[i].bus,
                          cfg->file);
    }

    /* One port per distinct TCP endpoint and per RTU bus given a pty. */
    for (size_t bi = 0; bi < cfg->n_buses; bi++) {
        const gw_bus *b = &cfg->buses[bi];
        sim_port *p = NULL;
        if (b->type == GW_BUS_TCP) {
            int portno = b->port;
            for (size_t i = 0; i < o->n_ovr; i++)
                if (strcmp(o->ovr[i].bus, b->id) == 0)
                    portno = o->ovr[i].port;
            const char *host = b->host ? b->host : "";
            p = port_for_tcp(s, host, portno);
            if (!p) {
                p = &s->ports[s->n_ports++];
                snprintf(p->host, sizeof p->host, "%s", host);
                p->portno = portno;
                p->bus = b;
                snprintf(p->label, sizeof p->label, "%s:%d (%s)", host, portno, b->id);
            }
        } else {
            const char *path = NULL;
            for (size_t i = 0; i < o->n_rtu; i++)
                if (strcmp(o->rtu[i].bus, b->id) == 0)
                    path = o->rtu[i].path;
            if (!path) {
                gw_notice(AREA, "RTU bus %s not served (no --rtu %s=PTY)", b->id, b->id);
                continue;
            }
            p = &s->ports[s->n_ports++];
            p->is_rtu = 1;
            p->bus = b;
            p->path = gw_strdup(path);
            snprintf(p->label, sizeof p->label, "%s (%s)", path, b->id);
        }
        for (size_t di = 0; di < m->n_devs; di++) {
            sim_device *d = &m->devs[di];
            if (d->bus != b || !d->cfg->enabled)
                continue;
            int u = d->cfg->unit_id & 0xFF;
            if (p->unit[u] && p->unit[u] != d) {
                gw_cfgerr_add(errs, cfg->file, "devices", "%s and %s both answer unit %d on %s",
                              p->unit[u]->cfg->id, d->cfg->id, u, p->label);
                continue;
            }
            p->unit[u] = d;
        }
    }
    if (errs->n > nerr0) {
        sim_server_close(s);
        return GW_ECONFIG;
    }
    for (size_t i = 0; i < s->n_ports; i++) {
        sim_port *p = &s->ports[i];
        int rc = p->is_rtu ? rtu_open(s, p) : tcp_listen(s, p);
        if (rc != 0) {
            if (p->is_rtu)
                gw_error(AREA, "cannot open %s: %s", p->label, strerror(errno));
            sim_server_close(s);
            return GW_EIO;
        }
        if (p->is_rtu)
            gw_info(AREA, "serving RTU on %s", p->label);
    }
    *out = s;
    return 0;
}

/* ---- the loop ----------------------------------------------------------------------------- */

static void run_timed(sim_server *s, int64_t now)
{
    for (size_t i = 0; i < s->n_ports; i++) {
        sim_port *p = &s->ports[i];
        if (p->is_rtu && !p->ep && p->reopen_ms && now >= p->reopen_ms) {
            if (rtu_open(s, p) == 0)
                gw_notice(AREA, "reopened %s", p->label);
            else
                p->reopen_ms = now + RTU_REOPEN_MS;
        }
    }
    sim_ep *e = s->timed;
    while (e) {
        sim_ep *next = e->tnext;
        int rc = ep_flush(s, e, now);
        if (rc == 0 && e->type == EP_RTU && e->in_len)
            rc = rtu_frames(s, e, now);
        if (rc != 0)
            ep_close(s, e);
        e = next;
    }
}

int64_t sim_server_next_due(const sim_server *s)
{
    int64_t due = -1;
    for (const sim_ep *e = s->timed; e; e = e->tnext) {
        int64_t t = e->oq_head ? e->oq_head->due_ms : -1;
        if (e->type == EP_RTU && e->in_len) {
            int64_t g = e->in_last_ms + RTU_GAP_MS;
            if (t < 0 || g < t)
                t = g;
        }
        if (t >= 0 && (due < 0 || t < due))
            due = t;
    }
    for (size_t i = 0; i < s->n_ports; i++)
        if (s->ports[i].reopen_ms && (due < 0 || s->ports[i].reopen_ms < due))
            due = s->ports[i].reopen_ms;
    return due;
}

int sim_server_poll(sim_server *s, int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(s->epfd, evs, 256, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : GW_EIO;
    for (int i = 0; i < n; i++) {
        sim_ep *e = evs[i].data.ptr;
        uint32_t ev = evs[i].events;
        if (e->type == EP_LISTEN) {
            tcp_accept(s, e);
            continue;
        }
        int rc = 0;
        if (ev & EPOLLOUT)
            rc = ep_flush(s, e, gw_mono_ms());
        if (rc == 0 && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
            rc = e->type == EP_TCP ? tcp_read(s, e) : rtu_read(s, e);
        if (rc == 0 && e->type == EP_RTU && (ev & (EPOLLHUP | EPOLLERR)) && !(ev & EPOLLIN))
            rc = GW_EIO;
        if (rc != 0) {
            if (e->type == EP_RTU)
                gw_warn(AREA, "%s: line lost (%s); reopening every %d ms", e->port->label,
                        gw_strerror(rc), RTU_REOPEN_MS);
            else
                gw_debug(AREA, "connection %d on %s closed", e->fd, e->port->label);
            ep_close(s, e);
        }
    }
    run_timed(s, gw_mono_ms());
    return 0;
}

void sim_server_stats(const sim_server *s)
{
    gw_notice(AREA, "connections %llu (open %llu), requests %llu, answers %llu, exceptions %llu, "
              "unanswered %llu, bad frames %llu",
              (unsigned long long)s->conns, (unsigned long long)s->conns_open,
              (unsigned long long)s->requests, (unsigned long long)s->answers,
              (unsigned long long)s->exceptions, (unsigned long long)s->dropped,
              (unsigned long long)s->bad_frames);
}

void sim_server_close(sim_server *s)
{
    if (!s)
        return;
    while (s->conns_list)
        ep_close(s, s->conns_list);
    for (size_t i = 0; i < s->n_ports; i++) {
        if (s->ports[i].ep)
            ep_close(s, s->ports[i].ep);
        s->ports[i].reopen_ms = 0;
        gw_free(s->ports[i].path);
    }
    if (s->epfd >= 0)
        close(s->epfd);
    gw_free(s->ports);
    gw_free(s);
}
