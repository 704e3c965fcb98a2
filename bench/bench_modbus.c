/* Modbus polling benchmark: D simulated TCP devices (one endpoint each, as in
 * reference/measured-here.md), each with 2 blocks of 10 holding registers, polled every
 * interval for S seconds,
 *   (a) by citygate's poller (profile -> plan -> bounded worker pool -> samples queue,
 *       samples drained by a consumer thread as the engine would; on TCP the poller
 *       frames and checks requests itself on libmodbus's socket, gateway/modbus/frame.h,
 *       one poll() + recv() per answer where modbus_read_registers makes three of each),
 *       and
 *   (b) by a raw libmodbus loop (one thread, one connection per device, 2 block reads
 *       per device per interval, nothing decoded),
 *   (c) by collectd's modbus plugin (Debian collectd-core: /usr/sbin/collectd -f with a
 *       generated collectd.conf: one <Host> per device with Interval, one <Data> per
 *       value, i.e. one request per register, as the plugin reads), with the csv writer
 *       into the temp dir (--collectd-write none|csv|write_log),
 * side by side in one run. Each client runs in its own process so CPU time and max RSS
 * are its own; the devices are served by a separate process (an epoll Modbus TCP server
 * written here, so the server's cost is not counted). collectd is measured from
 * /proc/<pid>/stat (utime + stime) over `seconds` after a 2 s start-up, its requests and
 * registers as the server saw them, its RSS as VmHWM. collectd (libmodbus 3.1.6 select())
 * aborts once a descriptor reaches 1024: its device count is capped at --collectd-max
 * (default 1000); a crash is reported as measured.
 *
 *   bench_modbus [--devices 50,200,1000] [--seconds 10] [--interval-ms 1000]
 *                [--collectd PATH | --no-collectd] [--collectd-write csv] [--collectd-max 1000]
 *
 * Prints per D: requests per device-cycle, requests/s, registers/s, CPU s per 10,000
 * registers, max RSS, and the ratios. Goal (issue 3): requests per cycle no more than
 * the best plan (2), CPU within 1.5x of the raw loop and below collectd. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sys/mman.h>

#include <modbus/modbus.h>
#include <pthread.h>

#include "check.h"
#include "config.h"
#include "log.h"
#include "modbus/poller.h"
#include "queue.h"
#include "timeutil.h"

#define MAXD 1000

/* ---- the simulated field: one listening port per device, epoll, FC03/FC04 ---------- */

/* What the server answered, shared with the parent (counts collectd's reads). */
typedef struct served {
    uint64_t requests, registers;
} served;
static served *g_served;

typedef struct conn_buf {
    uint8_t in[300];
    size_t n;
} conn_buf;

static void serve(int *lfd, int nd) __attribute__((noreturn));
static void serve(int *lfd, int nd)
{
    int ep = epoll_create1(0);
    for (int i = 0; i < nd; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)lfd[i] | (1ull << 40)};
        epoll_ctl(ep, EPOLL_CTL_ADD, lfd[i], &ev);
    }
    conn_buf *bufs = calloc(65536, sizeof *bufs);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = (int)(evs[i].data.u64 & 0xFFFFFFFF);
            if (evs[i].data.u64 >> 40) {
                int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK);
                if (c >= 0 && c < 65536) {
                    int one = 1;
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    bufs[c].n = 0;
                    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                } else if (c >= 0) {
                    close(c);
                }
                continue;
            }
            conn_buf *b = &bufs[fd];
            ssize_t r = read(fd, b->in + b->n, sizeof b->in - b->n);
            if (r <= 0) {
                close(fd);
                continue;
            }
            b->n += (size_t)r;
            while (b->n >= 12) { /* MBAP(7) + fc + addr + qty */
                size_t len = 6 + (size_t)(b->in[4] << 8 | b->in[5]);
                if (len > sizeof b->in) {
                    b->n = 0;
                    break;
                }
                if (b->n < len)
                    break;
                uint8_t out[300];
                unsigned fc = b->in[7], addr = (unsigned)(b->in[8] << 8 | b->in[9]);
                unsigned qty = (unsigned)(b->in[10] << 8 | b->in[11]);
                size_t o;
                memcpy(out, b->in, 7);
                if ((fc == 3 || fc == 4) && qty >= 1 && qty <= 125) {
                    out[7] = (uint8_t)fc;
                    out[8] = (uint8_t)(2 * qty);
                    for (unsigned k = 0; k < qty; k++) {
                        unsigned v = (addr + k) * 7 + (unsigned)fd;
                        out[9 + 2 * k] = (uint8_t)(v >> 8);
                        out[10 + 2 * k] = (uint8_t)v;
                    }
                    o = 9 + 2 * qty;
                    __atomic_fetch_add(&g_served->requests, 1, __ATOMIC_RELAXED);
                    __atomic_fetch_add(&g_served->registers, qty, __ATOMIC_RELAXED);
                } else {
                    out[7] = (uint8_t)(fc | 0x80);
                    out[8] = 1;
                    o = 9;
                }
                out[4] = (uint8_t)((o - 6) >> 8);
                out[5] = (uint8_t)(o - 6);
                if (write(fd, out, o) < 0) {
                    /* the client went away; the next read closes it */
                }
                memmove(b->in, b->in + len, b->n - len);
                b->n -= len;
            }
        }
    }
}

/* ---- the clients -------------------------------------------------------------------- */

typedef struct result {
    double requests, registers, seconds, device_cycles; /* steady state (after warm-up) */
    double cpu_s;      /* whole process (wait4): start-up, warm-up and shutdown included */
    double cpu_poll_s; /* steady state, the polling threads only (raw: its one thread;
                          citygate: the process minus the bench's consumer and main) */
    double cpu_proc_s; /* steady state, the whole process (citygate: + the consumer) */
    double run_s;      /* wall time of the whole run (cpu_s's span) */
    long maxrss_kb;
    double csw; /* voluntary context switches, whole run */
} result;

/* Both clients are measured by the same rules: precise CPU clocks (CLOCK_*_CPUTIME_ID:
 * scheduler run time, not tick-sampled rusage) read at two snapshots, the first after
 * --warmup seconds (connects, threads, profiles and the first-cycle burst excluded),
 * the second `seconds` later; requests and registers are counted between the same two
 * snapshots. */
static double cpu_clock(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0)
        return 0;
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_now(void)
{
    return cpu_clock(CLOCK_PROCESS_CPUTIME_ID);
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void raw_loop(const int *ports, int nd, double warmup, double seconds, int interval_ms,
                     int out_fd)
{
    static modbus_t *ctx[MAXD];
    uint16_t regs[125];
    result r = {0};
    double req = 0, reg = 0, cyc = 0, c0 = 0;
    int64_t ts0 = 0;
    for (int i = 0; i < nd; i++) {
        char port[16];
        snprintf(port, sizeof port, "%d", ports[i]);
        ctx[i] = modbus_new_tcp_pi("127.0.0.1", port);
        modbus_set_slave(ctx[i], 1);
        if (modbus_connect(ctx[i]) != 0) {
            fprintf(stderr, "raw: connect %d: %s\n", ports[i], modbus_strerror(errno));
            _exit(1);
        }
    }
    int64_t t0 = now_us(), next = t0;
    int64_t warm_end = t0 + (int64_t)(warmup * 1e6), end = warm_end + (int64_t)(seconds * 1e6);
    int warm = warmup <= 0;
    if (warm) {
        c0 = cpu_now();
        ts0 = now_us();
    }
    for (;;) {
        int64_t t = now_us();
        if (!warm && t >= warm_end) { /* first snapshot, between two cycles */
            warm = 1;
            c0 = cpu_now();
            ts0 = t;
            req = reg = cyc = 0;
        }
        if (t >= end)
            break;
        for (int i = 0; i < nd; i++) {
            if (modbus_read_registers(ctx[i], 0, 10, regs) == 10) {
                req++;
                reg += 10;
            }
            if (modbus_read_registers(ctx[i], 100, 10, regs) == 10) {
                req++;
                reg += 10;
            }
            cyc++;
        }
        next += (int64_t)interval_ms * 1000;
        int64_t w = next - now_us();
        if (w > 0)
            usleep((useconds_t)w);
    }
    r.cpu_poll_s = cpu_now() - c0;
    r.cpu_proc_s = r.cpu_poll_s; /* one thread: the loop is the process */
    r.seconds = (double)(now_us() - ts0) / 1e6;
    r.requests = req;
    r.registers = reg;
    r.device_cycles = cyc;
    if (write(out_fd, &r, sizeof r) != (ssize_t)sizeof r)
        _exit(1);
    _exit(0);
}

/* The bench's stand-in for the engine: blocks without a timeout (no periodic wake-ups
 * of its own), ends when the queue is shut down and drained. */
static void *consume(void *arg)
{
    static gw_sample s[1024];
    gw_queue *q = arg;
    while (gw_queue_pop_many(q, s, 1024, -1) > 0) {
    }
    return NULL;
}

static void sleep_until(int64_t t)
{
    for (int64_t w; (w = t - now_us()) > 0;)
        usleep((useconds_t)(w > 1000000 ? 1000000 : w));
}

static void poller_run(const char *cfg_file, double warmup, double seconds, int out_fd)
{
    gw_cfgerr errs = {0};
    gw_config *cfg = NULL;
    gw_log_set_level(GW_LOG_WARN);
    if (gw_config_load_checked(cfg_file, &errs, &cfg) != 0) {
        gw_cfgerr_print(&errs, 2);
        _exit(1);
    }
    gw_log_set_level(GW_LOG_WARN);
    gw_queue *q = NULL;
    gw_poller *p = NULL;
    pthread_t cons;
    clockid_t cons_clk;
    if (gw_queue_new(8192, sizeof(gw_sample), GW_QUEUE_BLOCK, &q) != 0 ||
        pthread_create(&cons, NULL, consume, q) != 0 || pthread_getcpuclockid(cons, &cons_clk) != 0)
        _exit(1);
    int64_t t0 = now_us();
    if (gw_poller_new(cfg, q, &p) != 0 || gw_poller_start(p) != 0)
        _exit(1);
    /* Snapshots: the polling threads' CPU is the process's minus the consumer's and this
     * thread's (which only sleeps between the snapshots). */
    gw_poller_stats s0, s1;
    sleep_until(t0 + (int64_t)(warmup * 1e6));
    int64_t ts0 = now_us();
    double p0 = cpu_now(), k0 = cpu_clock(cons_clk), m0 = cpu_clock(CLOCK_THREAD_CPUTIME_ID);
    gw_poller_stats_get(p, &s0);
    sleep_until(ts0 + (int64_t)(seconds * 1e6));
    double p1 = cpu_now(), k1 = cpu_clock(cons_clk), m1 = cpu_clock(CLOCK_THREAD_CPUTIME_ID);
    gw_poller_stats_get(p, &s1);
    int64_t ts1 = now_us();
    gw_poller_stop(p);
    gw_queue_shutdown(q);
    pthread_join(cons, NULL);
    result r = {0};
    r.seconds = (double)(ts1 - ts0) / 1e6;
    r.requests = (double)(s1.requests - s0.requests);
    r.registers = (double)(s1.registers - s0.registers);
    r.device_cycles = (double)(s1.cycles - s0.cycles);
    r.cpu_proc_s = p1 - p0;
    r.cpu_poll_s = (p1 - p0) - (k1 - k0) - (m1 - m0);
    fprintf(stderr, "  (poller: %u workers, %llu connects, %llu disconnects, %llu fd-refused, "
            "%llu timeouts, %llu samples dropped, %llu slots missed; consumer %.4f s CPU)\n",
            s1.workers, (unsigned long long)s1.connects, (unsigned long long)s1.disconnects,
            (unsigned long long)s1.fd_refused, (unsigned long long)s1.timeouts,
            (unsigned long long)s1.samples_dropped, (unsigned long long)s1.cycles_late, k1 - k0);
    if (write(out_fd, &r, sizeof r) != (ssize_t)sizeof r)
        _exit(1);
    _exit(0);
}

typedef enum { RUN_RAW, RUN_POLLER } run_kind;

static int run_child(run_kind k, const int *ports, int nd, const char *cfg, double warmup,
                     double seconds, int interval_ms, result *out)
{
    int pfd[2];
    if (pipe(pfd) != 0)
        return -1;
    int64_t start = now_us();
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        if (k == RUN_RAW)
            raw_loop(ports, nd, warmup, seconds, interval_ms, pfd[1]);
        else
            poller_run(cfg, warmup, seconds, pfd[1]);
    }
    close(pfd[1]);
    ssize_t n = read(pfd[0], out, sizeof *out);
    close(pfd[0]);
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0 || n != (ssize_t)sizeof *out)
        return -1;
    out->cpu_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    out->run_s = (double)(now_us() - start) / 1e6;
    out->maxrss_kb = ru.ru_maxrss;
    out->csw = (double)ru.ru_nvcsw;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* ---- collectd's modbus plugin ----------------------------------------------------------- */

typedef struct collectd_opts {
    const char *bin;   /* NULL: not run */
    const char *write; /* "none", "csv" or "write_log" */
    int max;           /* largest D it is run for */
} collectd_opts;

static int write_collectd_conf(const char *dir, const int *ports, int nd, int interval_ms,
                               const char *writer, char *conf, size_t n)
{
    char path[600];
    snprintf(path, sizeof path, "%s/collectd", dir);
    mkdir(path, 0700);
    snprintf(conf, n, "%s/collectd/collectd.conf", dir);
    FILE *f = fopen(conf, "w");
    if (!f)
        return -1;
    double iv = interval_ms / 1000.0;
    fprintf(f, "BaseDir \"%s/collectd\"\nPIDFile \"%s/collectd/collectd.pid\"\n"
               "TypesDB \"/usr/share/collectd/types.db\"\nInterval %g\nAutoLoadPlugin false\n"
               "LoadPlugin logfile\n<Plugin logfile>\n  LogLevel \"%s\"\n"
               "  File \"%s/collectd/collectd.log\"\n  Timestamp true\n</Plugin>\n",
            dir, dir, iv, strcmp(writer, "write_log") == 0 ? "info" : "warning", dir);
    if (strcmp(writer, "csv") == 0)
        fprintf(f, "LoadPlugin csv\n<Plugin csv>\n  DataDir \"%s/collectd/csv\"\n  StoreRates false\n"
                   "</Plugin>\n", dir);
    else if (strcmp(writer, "write_log") == 0)
        fprintf(f, "LoadPlugin write_log\n<Plugin write_log>\n  Format \"Graphite\"\n</Plugin>\n");
    fprintf(f, "LoadPlugin modbus\n<Plugin modbus>\n");
    /* The plugin reads one value per <Data>: the same 20 registers as the profile. */
    for (int i = 0; i < 20; i++)
        fprintf(f, "  <Data \"r%d\">\n    RegisterBase %d\n    RegisterType Uint16\n"
                   "    RegisterCmd ReadHolding\n    Type gauge\n    Instance \"r%d\"\n"
                   "    Scale 0.1\n  </Data>\n", i, i < 10 ? i : 100 + i - 10, i);
    for (int d = 0; d < nd; d++) {
        fprintf(f, "  <Host \"d%d\">\n    Address \"127.0.0.1\"\n    Port \"%d\"\n    Interval %g\n"
                   "    <Slave 1>\n      Instance \"d%d\"\n", d, ports[d], iv, d);
        for (int i = 0; i < 20; i++)
            fprintf(f, "      Collect \"r%d\"\n", i);
        fprintf(f, "    </Slave>\n  </Host>\n");
    }
    fprintf(f, "</Plugin>\n");
    return fclose(f) == 0 ? 0 : -1;
}

/* utime + stime of pid in seconds, -1 when it is gone. */
static double proc_cpu(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    char state = 0;
    unsigned long ut = 0, stt = 0;
    /* after "pid (comm)": state, then fields 4..13, then utime (14) and stime (15) */
    if (sscanf(p + 2, "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &state, &ut, &stt) != 3 ||
        state == 'Z' || state == 'X')
        return -1;
    return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
}

/* A "Key:   N kB"-style number from /proc/<pid>/status; summed over every thread when
 * per_task (context switches are per thread). */
static double proc_status(pid_t pid, const char *key, int per_task)
{
    char path[300], line[256];
    double sum = 0;
    size_t kl = strlen(key);
    if (!per_task) {
        snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof line, f))
            if (strncmp(line, key, kl) == 0 && line[kl] == ':')
                sum = atof(line + kl + 1);
        if (f)
            fclose(f);
        return sum;
    }
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/%d/task/%s/status", (int)pid, e->d_name);
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof line, f))
            if (strncmp(line, key, kl) == 0 && line[kl] == ':')
                sum += atof(line + kl + 1);
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    return sum;
}

/* Run collectd on the same devices for `seconds` after a 2 s start. Returns 0, or -1
 * with why in `why` (it could not start, or died: exit status / signal, as measured). */
static int run_collectd(const collectd_opts *co, const char *dir, const int *ports, int nd,
                        double seconds, int interval_ms, result *out, char *why, size_t whyn)
{
    char conf[600], logf[600];
    if (write_collectd_conf(dir, ports, nd, interval_ms, co->write, conf, sizeof conf) != 0) {
        snprintf(why, whyn, "cannot write collectd.conf");
        return -1;
    }
    snprintf(logf, sizeof logf, "%s/collectd/stdout.log", dir);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(logf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(co->bin, co->bin, "-f", "-C", conf, (char *)NULL);
        _exit(127);
    }
    if (pid < 0) {
        snprintf(why, whyn, "fork: %s", strerror(errno));
        return -1;
    }
    int status = 0, dead = 0;
    double c0 = -1, c1 = -1, csw0 = 0, csw1 = 0, hwm = 0;
    uint64_t r0 = 0, g0 = 0, r1 = 0, g1 = 0;
    int64_t t0 = 0, t1 = 0;
    int64_t start = now_us();
    for (int phase = 0; phase < 2 && !dead; phase++) {
        int64_t until = (phase == 0 ? start + 2000000 : t0 + (int64_t)(seconds * 1e6));
        while (now_us() < until) {
            if (waitpid(pid, &status, WNOHANG) == pid) {
                dead = 1;
                break;
            }
            usleep(50000);
        }
        if (dead)
            break;
        double c = proc_cpu(pid), csw = proc_status(pid, "voluntary_ctxt_switches", 1);
        uint64_t r = __atomic_load_n(&g_served->requests, __ATOMIC_RELAXED);
        uint64_t g = __atomic_load_n(&g_served->registers, __ATOMIC_RELAXED);
        if (phase == 0) {
            c0 = c, csw0 = csw, r0 = r, g0 = g, t0 = now_us();
        } else {
            c1 = c, csw1 = csw, r1 = r, g1 = g, t1 = now_us();
            hwm = proc_status(pid, "VmHWM", 0);
        }
    }
    if (!dead) {
        kill(pid, SIGTERM);
        int64_t until = now_us() + 5000000;
        while (waitpid(pid, &status, WNOHANG) != pid) {
            if (now_us() > until) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                break;
            }
            usleep(20000);
        }
    }
    if (dead || c0 < 0 || c1 < 0) {
        if (WIFSIGNALED(status))
            snprintf(why, whyn, "collectd died on signal %d (%s) after %.1f s; see its log",
                     WTERMSIG(status), strsignal(WTERMSIG(status)), (double)(now_us() - start) / 1e6);
        else
            snprintf(why, whyn, "collectd exited %d after %.1f s; see its log",
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1, (double)(now_us() - start) / 1e6);
        return -1;
    }
    memset(out, 0, sizeof *out);
    out->seconds = (double)(t1 - t0) / 1e6;
    out->requests = (double)(r1 - r0);
    out->registers = (double)(g1 - g0);
    out->device_cycles = nd * out->seconds / (interval_ms / 1000.0); /* nominal */
    out->cpu_poll_s = c1 - c0;
    out->cpu_proc_s = out->cpu_poll_s;
    out->cpu_s = c1;
    out->run_s = (double)(t1 - start) / 1e6;
    out->maxrss_kb = (long)hwm;
    out->csw = (csw1 - csw0) * out->run_s / (out->seconds > 0 ? out->seconds : 1);
    return 0;
}

static int write_config(const char *dir, const int *ports, int nd, int interval_ms, char *cfg, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/bench-2x10.json", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "{\"name\":\"bench-2x10\",\"points\":[");
    for (int i = 0; i < 20; i++)
        fprintf(f, "%s{\"field\":\"r%d\",\"table\":\"holding\",\"address\":%d,\"type\":\"u16\",\"scale\":0.1}",
                i ? "," : "", i, i < 10 ? i : 100 + i - 10);
    fprintf(f, "]}\n");
    fclose(f);
    snprintf(cfg, n, "%s/bench.json", dir);
    f = fopen(cfg, "w");
    if (!f)
        return -1;
    fprintf(f, "{\"gateway\":{\"id\":\"GW-500103-0099\",\"admin_code\":\"500103\",\"data_dir\":\"%s\","
               "\"log_level\":\"warn\"},\"paths\":{\"profiles\":\"%s\",\"rules\":\"%s\"},\"http\":{\"enabled\":false},"
               "\"buses\":[", dir, dir, dir);
    for (int i = 0; i < nd; i++)
        fprintf(f, "%s{\"id\":\"b%d\",\"type\":\"tcp\",\"host\":\"127.0.0.1\",\"port\":%d,\"response_timeout_ms\":1000}",
                i ? "," : "", i, ports[i]);
    fprintf(f, "],\"devices\":[");
    for (int i = 0; i < nd; i++)
        fprintf(f, "%s{\"id\":\"d%d\",\"kind\":\"lamp\",\"interval_ms\":%d,\"rule_sets\":[],"
                   "\"modbus\":{\"bus\":\"b%d\",\"unit_id\":1,\"profile\":\"bench-2x10\"},"
                   "\"component\":{\"code\":\"500103011800%04d\",\"grid\":\"500103001002003\"}}",
                i ? "," : "", i, interval_ms, i, i);
    fprintf(f, "]}\n");
    fclose(f);
    return 0;
}

static void print_row(const char *name, const result *r)
{
    double cpu10k = r->registers > 0 ? r->cpu_poll_s / (r->registers / 1e4) : 0;
    double proc10k = r->registers > 0 ? r->cpu_proc_s / (r->registers / 1e4) : 0;
    /* the whole run's registers: the steady rate over the whole run, approximately */
    double all10k = r->registers > 0 ? r->cpu_s / (r->registers / r->seconds * r->run_s / 1e4) : 0;
    printf("  %-8s %9.2f %11.0f %12.0f %12.4f %12.4f %12.4f %9.1f %9.0f\n", name,
           r->device_cycles > 0 ? r->requests / r->device_cycles : 0, r->requests / r->seconds,
           r->registers / r->seconds, cpu10k, proc10k, all10k, r->maxrss_kb / 1024.0,
           r->csw / (r->run_s > 0 ? r->run_s : r->seconds));
}

int main(int argc, char **argv)
{
    const char *list = "50,200,1000";
    double seconds = 10, warmup = 3;
    int interval_ms = 1000;
    collectd_opts co = {.bin = "/usr/sbin/collectd", .write = "csv", .max = 1000};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--devices") == 0 && i + 1 < argc)
            list = argv[++i];
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--warmup") == 0 && i + 1 < argc)
            warmup = atof(argv[++i]);
        else if (strcmp(argv[i], "--interval-ms") == 0 && i + 1 < argc)
            interval_ms = atoi(argv[++i]);
        else if (strcmp(argv[i], "--collectd") == 0 && i + 1 < argc)
            co.bin = argv[++i];
        else if (strcmp(argv[i], "--no-collectd") == 0)
            co.bin = NULL;
        else if (strcmp(argv[i], "--collectd-write") == 0 && i + 1 < argc)
            co.write = argv[++i];
        else if (strcmp(argv[i], "--collectd-max") == 0 && i + 1 < argc)
            co.max = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_modbus [--devices 50,200,1000] [--seconds S] [--warmup S] [--interval-ms N]\n"
                            "                    [--collectd PATH | --no-collectd] [--collectd-write none|csv|write_log]\n"
                            "                    [--collectd-max N]\n");
            return 2;
        }
    }
    if (strcmp(co.write, "none") != 0 && strcmp(co.write, "csv") != 0 && strcmp(co.write, "write_log") != 0) {
        fprintf(stderr, "bench_modbus: --collectd-write must be none, csv or write_log\n");
        return 2;
    }
    if (co.bin && access(co.bin, X_OK) != 0) {
        fprintf(stderr, "bench_modbus: %s not found (Debian collectd-core); running without collectd\n", co.bin);
        co.bin = NULL;
    }
    g_served = mmap(NULL, sizeof *g_served, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_served == MAP_FAILED)
        return 1;
    /* The server process holds 2 descriptors per device. */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    char dir[] = "/tmp/bench_modbus.XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    printf("bench_modbus: %g s measured per run after %g s warm-up, interval %d ms, "
           "2 blocks x 10 holding registers per device\n", seconds, warmup, interval_ms);
    printf("CPU s/10k: polling threads, steady state; (+consumer): whole process, steady state; "
           "(w/ start): whole process, whole run\n");
    if (co.bin)
        printf("collectd: %s -f, modbus plugin, one <Data> per register (20 requests per device-cycle), "
               "writer %s, read threads 5 (default)\n", co.bin, co.write);
    printf("  %-8s %9s %11s %12s %12s %12s %12s %9s %9s\n", "client", "req/cycle", "requests/s",
           "registers/s", "CPU s/10k", "(+consumer)", "(w/ start)", "RSS MB", "csw/s");
    char *copy = strdup(list);
    int rc = 0;
    for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
        int nd = atoi(tok);
        if (nd < 1 || nd > MAXD)
            continue;
        static int lfd[MAXD], ports[MAXD];
        for (int i = 0; i < nd; i++) {
            lfd[i] = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            socklen_t al = sizeof a;
            if (bind(lfd[i], (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd[i], 64) != 0 ||
                getsockname(lfd[i], (struct sockaddr *)&a, &al) != 0) {
                perror("bench_modbus: listen");
                return 1;
            }
            ports[i] = ntohs(a.sin_port);
        }
        pid_t srv = fork();
        if (srv == 0)
            serve(lfd, nd);
        for (int i = 0; i < nd; i++)
            close(lfd[i]);
        char cfg[600];
        write_config(dir, ports, nd, interval_ms, cfg, sizeof cfg);
        result raw = {0}, pol = {0};
        printf("D = %d\n", nd);
        if (run_child(RUN_RAW, ports, nd, cfg, warmup, seconds, interval_ms, &raw) != 0) {
            fprintf(stderr, "bench_modbus: raw loop failed at D=%d\n", nd);
            rc = 1;
        }
        if (run_child(RUN_POLLER, ports, nd, cfg, warmup, seconds, interval_ms, &pol) != 0) {
            fprintf(stderr, "bench_modbus: poller failed at D=%d\n", nd);
            rc = 1;
        }
        result cd = {0};
        int cd_ok = 0;
        char why[300] = "";
        if (co.bin && nd <= co.max) {
            cd_ok = run_collectd(&co, dir, ports, nd, seconds, interval_ms, &cd, why, sizeof why) == 0;
            if (!cd_ok) {
                char cmd[700];
                fprintf(stderr, "bench_modbus: D=%d: %s\n", nd, why);
                snprintf(cmd, sizeof cmd, "tail -n 5 %s/collectd/collectd.log %s/collectd/stdout.log >&2", dir, dir);
                if (system(cmd) != 0) {
                    /* the log is only a hint */
                }
            }
        } else if (co.bin) {
            snprintf(why, sizeof why, "not run above --collectd-max %d (libmodbus 3.1.6 aborts at descriptor 1024)", co.max);
        }
        kill(srv, SIGKILL);
        waitpid(srv, NULL, 0);
        print_row("raw", &raw);
        print_row("citygate", &pol);
        if (cd_ok)
            print_row("collectd", &cd);
        else if (co.bin)
            printf("  %-8s %s\n", "collectd", why);
        double cr = raw.registers > 0 && pol.registers > 0
                        ? (pol.cpu_poll_s / pol.registers) / (raw.cpu_poll_s / raw.registers) : 0;
        printf("  ratio citygate/raw: registers/s %.3f, CPU per register %.2fx (goal <= 1.5x), "
               "requests per cycle %.2f (best plan 2)\n",
               raw.registers > 0 ? pol.registers / raw.registers : 0, cr,
               pol.device_cycles > 0 ? pol.requests / pol.device_cycles : 0);
        if (cd_ok && cd.registers > 0 && pol.registers > 0)
            printf("  ratio citygate/collectd: CPU per register %.3fx (goal < 1), RSS %.2fx, "
                   "requests per cycle %.2f vs %.2f\n",
                   (pol.cpu_poll_s / pol.registers) / (cd.cpu_poll_s / cd.registers),
                   (double)pol.maxrss_kb / (double)(cd.maxrss_kb ? cd.maxrss_kb : 1),
                   pol.device_cycles > 0 ? pol.requests / pol.device_cycles : 0,
                   cd.device_cycles > 0 ? cd.requests / cd.device_cycles : 0);
        fflush(stdout);
    }
    free(copy);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
