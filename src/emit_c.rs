//! `splitfuzz emit-c FILE`: a standalone C reproducer (libc only) of a program:
//! the same system calls as `splitfuzz real`, one process per mm driven over
//! pipes, and after every op the same observation lines `real -v` prints
//! (`op I res R` and one `mm ...` line per live process; see `real.rs`).
//! The deposit model's prediction is embedded: every line that differs from it
//! is reported on stderr (`# model predicted: ...`), and the exit status is 1.
//! The fault plan becomes writes to `/proc/thread-self/fail-nth` before the op
//! that makes the failing allocation (skipped with a message where the kernel
//! has no fault injection).

use crate::exec::{self, RunConfig};
use crate::mm::Geometry;
use crate::program::{Advice, Op, Program, ARENA_SIZE, MAX_MMS};
use crate::real::{self, ARENA_BASE, GUARD_HI, GUARD_LO, NPAGES};
use std::fmt::Write as _;

const RUNTIME: &str = r##"
#define PAGE 4096ULL
#define MADV_COLD_ 20
#define MADV_PAGEOUT_ 21
#define MADV_POPULATE_READ_ 22
#define MADV_COLLAPSE_ 25
#define PAGEMAP_SCAN_ 0xC0606610UL
#define IS_PRESENT (1ULL << 3)
#define IS_SWAPPED (1ULL << 4)
#define IS_PFNZERO (1ULL << 5)
#define IS_HUGE (1ULL << 6)

struct vma { uint64_t s, e; int w, h; uint64_t anon_kb, thp_kb; };
static struct vma vmas[512];
static int nvmas;
static int me, pagemap_fd = -1;
static long base_pte_kb;
static char buf[1 << 20];
static size_t buflen;
static char out[1 << 18];
static size_t outlen;
static unsigned char states[NPAGES];
static uint64_t regions[NPAGES + 1][3];
static int cmd_fd[MAX_MMS][2], resp_fd[MAX_MMS][2];

static int read_file(const char *path)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;
	buflen = 0;
	if (fd < 0)
		return -1;
	while ((n = read(fd, buf + buflen, sizeof(buf) - 1 - buflen)) > 0)
		buflen += n;
	close(fd);
	buf[buflen] = 0;
	return 0;
}

static void outf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	outlen += vsnprintf(out + outlen, sizeof(out) - outlen, fmt, ap);
	va_end(ap);
	if (outlen >= sizeof(out))
		outlen = sizeof(out) - 1;
}

static void fmt_size(uint64_t b)
{
	if (b == 0)
		outf("0");
	else if (b % (1 << 20) == 0)
		outf("%lluM", (unsigned long long)(b >> 20));
	else if (b % 1024 == 0)
		outf("%lluK", (unsigned long long)(b >> 10));
	else
		outf("%llu", (unsigned long long)b);
}

static long vm_pte_kb(void)
{
	char *p;
	if (read_file("/proc/self/status"))
		return 0;
	p = strstr(buf, "VmPTE:");
	return p ? strtol(p + 6, NULL, 10) : 0;
}

static int in_arena(uint64_t s, uint64_t e)
{
	return s < ARENA_BASE + ARENA_SIZE && ARENA_BASE < e;
}

/* Page tables of every mapping outside the arena exist before the baseline. */
static void populate_outside_arena(void)
{
	uint64_t r[512][2];
	int n = 0, i;
	char *l;
	if (read_file("/proc/self/maps"))
		return;
	for (l = buf; l && *l && n < 512; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		unsigned long long s, e;
		char perms[5];
		if (sscanf(l, "%llx-%llx %4s", &s, &e, perms) == 3 && !in_arena(s, e) &&
		    perms[0] == 'r' && s < 0xffff800000000000ULL) {
			r[n][0] = s;
			r[n][1] = e;
			n++;
		}
	}
	for (i = 0; i < n; i++)
		madvise((void *)r[i][0], r[i][1] - r[i][0], MADV_POPULATE_READ_);
}

static void read_smaps(void)
{
	char *l;
	struct vma *cur = NULL;
	nvmas = 0;
	if (read_file("/proc/self/smaps"))
		return;
	for (l = buf; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		unsigned long long s, e;
		char perms[5];
		if (isxdigit((unsigned char)l[0]) && !isupper((unsigned char)l[0]) &&
		    sscanf(l, "%llx-%llx %4s", &s, &e, perms) == 3) {
			cur = NULL;
			if (in_arena(s, e) && nvmas < 512) {
				cur = &vmas[nvmas++];
				memset(cur, 0, sizeof(*cur));
				cur->s = s;
				cur->e = e;
				cur->w = perms[1] == 'w';
			}
			continue;
		}
		if (!cur)
			continue;
		if (!strncmp(l, "Anonymous:", 10))
			cur->anon_kb = strtoull(l + 10, NULL, 10);
		else if (!strncmp(l, "AnonHugePages:", 14))
			cur->thp_kb = strtoull(l + 14, NULL, 10);
		else if (!strncmp(l, "VmFlags:", 8)) {
			char *nl = strchr(l, '\n'), *h = strstr(l, " hg");
			cur->h = h && (!nl || h < nl) && (h[3] == ' ' || h[3] == '\n' || h[3] == 0);
		}
	}
}

static int vma_at(uint64_t pg, int *w)
{
	uint64_t a = ARENA_BASE + pg * PAGE;
	int i;
	for (i = 0; i < nvmas; i++)
		if (vmas[i].s <= a && a < vmas[i].e) {
			*w = vmas[i].w;
			return 1;
		}
	return 0;
}

static int scan_pages(void)
{
	uint64_t start = ARENA_BASE, end = ARENA_BASE + ARENA_SIZE;
	memset(states, '.', sizeof(states));
	while (start < end) {
		uint64_t arg[12] = { 96, 0, start, end, 0, (uint64_t)regions, NPAGES + 1, 0, 0, 0, 0,
				     IS_PRESENT | IS_SWAPPED | IS_PFNZERO | IS_HUGE };
		long n = ioctl(pagemap_fd, PAGEMAP_SCAN_, arg), i;
		if (n < 0)
			return -1;
		for (i = 0; i < n; i++) {
			uint64_t c = regions[i][2], a, b;
			unsigned char ch;
			if (c & IS_PRESENT)
				ch = (c & IS_HUGE) ? ((c & IS_PFNZERO) ? 'Z' : 'H') : ((c & IS_PFNZERO) ? 'z' : 'p');
			else if (c & IS_SWAPPED)
				ch = 's';
			else
				continue;
			a = ((regions[i][0] > ARENA_BASE ? regions[i][0] : ARENA_BASE) - ARENA_BASE) / PAGE;
			b = ((regions[i][1] < end ? regions[i][1] : end) - ARENA_BASE) / PAGE;
			memset(states + a, ch, b - a);
		}
		if (arg[4] <= start || arg[4] >= end)
			break;
		start = arg[4];
	}
	return 0;
}

static uint64_t tag(unsigned op, uint64_t page)
{
	return ((uint64_t)(op + 1) << 32) | (page + 1);
}

static void data_token(uint64_t v, uint64_t page, char *t, size_t n)
{
	uint64_t lo = v & 0xffffffffULL;
	if (v == 0)
		snprintf(t, n, "0");
	else if (lo >= 1 && lo <= NPAGES && (v >> 32) >= 1) {
		long long d = (long long)page - (long long)(lo - 1);
		if (d)
			snprintf(t, n, "w%llu%+lld", (unsigned long long)((v >> 32) - 1), d);
		else
			snprintf(t, n, "w%llu", (unsigned long long)((v >> 32) - 1));
	} else
		snprintf(t, n, "x%llx", (unsigned long long)v);
}

struct iv { uint64_t s, e; int w, h; };

static int cmp_iv(const void *a, const void *b)
{
	const struct iv *x = a, *y = b;
	return x->s < y->s ? -1 : x->s > y->s;
}

static int observe(void)
{
	long pte = vm_pte_kb();
	uint64_t anon = 0, thp = 0, pg;
	struct iv iv[512];
	int i, n = 0, m = 0, first = 1;
	char prev[64] = "", tok[64];
	size_t count = 0;
	read_smaps();
	if (scan_pages())
		return -1;
	for (i = 0; i < nvmas; i++) {
		anon += vmas[i].anon_kb;
		thp += vmas[i].thp_kb;
		iv[n].s = (vmas[i].s > ARENA_BASE ? vmas[i].s : ARENA_BASE) - ARENA_BASE;
		iv[n].e = (vmas[i].e < ARENA_BASE + ARENA_SIZE ? vmas[i].e : ARENA_BASE + ARENA_SIZE) - ARENA_BASE;
		iv[n].w = vmas[i].w;
		iv[n].h = vmas[i].h;
		n++;
	}
	qsort(iv, n, sizeof(iv[0]), cmp_iv);
	for (i = 0; i < n; i++) {
		if (m && iv[m - 1].e == iv[i].s && iv[m - 1].w == iv[i].w && iv[m - 1].h == iv[i].h)
			iv[m - 1].e = iv[i].e;
		else
			iv[m++] = iv[i];
	}
	outlen = 0;
	outf("mm %d pte %ld anon %llu thp %llu vmas ", me, (pte - base_pte_kb) / 4,
	     (unsigned long long)(anon / 4), (unsigned long long)(thp / 2048));
	if (!m)
		outf("none");
	for (i = 0; i < m; i++) {
		if (i)
			outf(",");
		fmt_size(iv[i].s);
		outf("-");
		fmt_size(iv[i].e);
		outf(":%s%s", iv[i].w ? "rw" : "r", iv[i].h ? "+h" : "");
	}
	outf(" pages ");
	for (pg = 0; pg < NPAGES;) {
		uint64_t j = pg;
		while (j < NPAGES && states[j] == states[pg])
			j++;
		outf("%c%llu", states[pg], (unsigned long long)(j - pg));
		pg = j;
	}
	outf(" data ");
	for (pg = 0; pg < NPAGES; pg++) {
		unsigned char s = states[pg];
		if (s == 'p' || s == 'z' || s == 'H' || s == 'Z')
			data_token(*(volatile uint64_t *)(ARENA_BASE + pg * PAGE), pg, tok, sizeof(tok));
		else
			snprintf(tok, sizeof(tok), "-");
		if (count && !strcmp(tok, prev)) {
			count++;
			continue;
		}
		if (count) {
			outf("%s%s*%zu", first ? "" : ",", prev, count);
			first = 0;
		}
		strcpy(prev, tok);
		count = 1;
	}
	if (count)
		outf("%s%s*%zu", first ? "" : ",", prev, count);
	return 0;
}

static void write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w <= 0) {
			if (w < 0 && errno == EINTR)
				continue;
			_exit(4);
		}
		c += w;
		n -= w;
	}
}

static int read_all(int fd, void *p, size_t n)
{
	char *c = p;
	while (n) {
		ssize_t r = read(fd, c, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c += r;
		n -= r;
	}
	return 0;
}

static void send_msg(int fd, const char *s, size_t n)
{
	uint32_t len = n;
	write_all(fd, &len, 4);
	write_all(fd, s, n);
}

static void send_str(int fd, const char *s)
{
	send_msg(fd, s, strlen(s));
}

static char *recv_msg(int fd)
{
	uint32_t len;
	char *s;
	if (read_all(fd, &len, 4))
		return NULL;
	s = malloc(len + 1);
	if (!s || read_all(fd, s, len))
		return NULL;
	s[len] = 0;
	return s;
}

static const char *res(long r)
{
	static char b[32];
	if (r == 0)
		return "ok";
	switch (errno) {
	case ENOMEM: return "ENOMEM";
	case EAGAIN: return "EAGAIN";
	case EBUSY: return "EBUSY";
	case EFAULT: return "EFAULT";
	case EINVAL: return "EINVAL";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	}
	snprintf(b, sizeof(b), "E%d", errno);
	return b;
}

static void *A(uint64_t off)
{
	return (void *)(ARENA_BASE + off);
}

static __attribute__((unused)) const char *do_mmap(uint64_t s, uint64_t l, int thp)
{
	if (mmap(A(s), l, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
		return res(-1);
	return thp ? res(madvise(A(s), l, MADV_HUGEPAGE)) : "ok";
}

static __attribute__((unused)) const char *do_mremap(uint64_t o, uint64_t l, uint64_t n)
{
	return mremap(A(o), l, l, MREMAP_MAYMOVE | MREMAP_FIXED, A(n)) == MAP_FAILED ? res(-1) : "ok";
}

/* Read or write every page; pages outside a VMA (and writes to read-only ones)
 * are skipped: the kernel would send SIGSEGV, the model returns EFAULT. */
static __attribute__((unused)) const char *do_touch(unsigned op, uint64_t s, uint64_t l, int write)
{
	uint64_t pg;
	int w;
	read_smaps();
	for (pg = s / PAGE; pg < (s + l) / PAGE; pg++) {
		volatile uint64_t *a = (volatile uint64_t *)(ARENA_BASE + pg * PAGE);
		if (!vma_at(pg, &w))
			continue;
		if (write && w)
			*a = tag(op, pg);
		else if (!write)
			(void)*a;
	}
	return "ok";
}

/* Fail the n-th fault-injectable allocation of the next call (fail-nth counts
 * every failslab/fail_page_alloc site, so n is the model's allocation index
 * within the op: a starting point, not an exact match). */
static __attribute__((unused)) void fail_nth(int n)
{
	char s[16];
	int fd = open("/proc/thread-self/fail-nth", O_WRONLY);
	if (fd < 0) {
		fprintf(stderr, "# fail-nth %d skipped: /proc/thread-self/fail-nth is missing (no CONFIG_FAULT_INJECTION)\n", n);
		return;
	}
	snprintf(s, sizeof(s), "%d", n);
	if (write(fd, s, strlen(s)) < 0)
		fprintf(stderr, "# fail-nth %d: %s\n", n, strerror(errno));
	close(fd);
}

static const char *do_op(unsigned i);

static void setup(void)
{
	uint64_t g[2] = { GUARD_LO, GUARD_HI };
	void *p = mmap(A(0), ARENA_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	int i;
	if (p != A(0)) {
		fprintf(stderr, "arena is not free\n");
		_exit(2);
	}
	munmap(p, ARENA_SIZE);
	for (i = 0; i < 2; i++) {
		p = mmap((void *)g[i], PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (p != (void *)g[i]) {
			fprintf(stderr, "guard page is not free\n");
			_exit(2);
		}
		*(volatile uint64_t *)p = 1;
	}
	pagemap_fd = open("/proc/self/pagemap", O_RDONLY);
	populate_outside_arena();
	base_pte_kb = vm_pte_kb();
}

static void mm_loop(void)
{
	char b[32];
	for (;;) {
		uint32_t c[3];
		if (read_all(cmd_fd[me][0], c, sizeof(c)))
			_exit(3);
		if (c[0] == 1 && op_kind[c[1]] == 'f') {
			pid_t pid;
			if (c[2] >= MAX_MMS) {
				send_str(resp_fd[me][1], "EAGAIN");
				continue;
			}
			pid = fork();
			if (pid < 0) {
				send_str(resp_fd[me][1], res(-1));
				continue;
			}
			if (pid == 0) {
				me = c[2];
				close(pagemap_fd);
				pagemap_fd = open("/proc/self/pagemap", O_RDONLY);
				populate_outside_arena();
				snprintf(b, sizeof(b), "ready %d", (int)getpid());
				send_str(resp_fd[me][1], b);
				continue;
			}
			send_str(resp_fd[me][1], "ok");
		} else if (c[0] == 1 && op_kind[c[1]] == 'x') {
			send_str(resp_fd[me][1], "ok");
			_exit(0);
		} else if (c[0] == 1) {
			send_str(resp_fd[me][1], do_op(c[1]));
		} else if (c[0] == 2) {
			if (observe())
				send_str(resp_fd[me][1], "error PAGEMAP_SCAN");
			else
				send_msg(resp_fd[me][1], out, outlen);
		} else
			_exit(0);
	}
}

static void wait_exit(pid_t pid)
{
	int fd = syscall(SYS_pidfd_open, pid, 0);
	struct pollfd p;
	if (fd < 0) {
		usleep(20000);
		return;
	}
	p.fd = fd;
	p.events = POLLIN;
	poll(&p, 1, 10000);
	close(fd);
}

static void cmd(int k, uint32_t kind, uint32_t a, uint32_t b)
{
	uint32_t c[3] = { kind, a, b };
	write_all(cmd_fd[k][1], c, sizeof(c));
}

static char *recv_or_die(int k)
{
	char *s = recv_msg(resp_fd[k][0]);
	if (!s) {
		fprintf(stderr, "mm %d died\n", k);
		exit(2);
	}
	return s;
}

int main(void)
{
	pid_t pids[MAX_MMS] = { 0 };
	int k, nprocs = 1, bad = 0;
	unsigned i;
	char line[64];
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (k = 0; k < MAX_MMS; k++)
		if (pipe(cmd_fd[k]) || pipe(resp_fd[k])) {
			perror("pipe");
			return 2;
		}
	pids[0] = fork();
	if (pids[0] < 0) {
		perror("fork");
		return 2;
	}
	if (pids[0] == 0) {
		signal(SIGCHLD, SIG_IGN);
		for (k = 0; k < MAX_MMS; k++) {
			close(cmd_fd[k][1]);
			close(resp_fd[k][0]);
		}
		me = 0;
		setup();
		snprintf(line, sizeof(line), "ready %d", (int)getpid());
		send_str(resp_fd[0][1], line);
		mm_loop();
	}
	for (k = 0; k < MAX_MMS; k++) {
		close(cmd_fd[k][0]);
		close(resp_fd[k][1]);
	}
	free(recv_or_die(0));
	for (i = 0; i < NR_OPS; i++) {
		char *r;
		int m = op_mm[i], j = 0;
		if (!pids[m])
			continue;
		cmd(m, 1, i, nprocs);
		r = recv_or_die(m);
		if (op_kind[i] == 'f' && !strcmp(r, "ok")) {
			char *rd = recv_or_die(nprocs);
			pids[nprocs++] = atoi(rd + 6);
			free(rd);
		} else if (op_kind[i] == 'x') {
			wait_exit(pids[m]);
			pids[m] = 0;
		}
		printf("op %u res %s\n", i, r);
		if (expected[i] && (strncmp(expected[i], r, strlen(r)) || strcspn(expected[i], "\n") != strlen(r))) {
			fprintf(stderr, "# op %u `%s`: result %s, model predicted %s\n", i, op_text[i], r, expected[i]);
			bad = 1;
		}
		free(r);
		for (k = 0; k < MAX_MMS; k++) {
			char *o;
			if (!pids[k])
				continue;
			cmd(k, 2, 0, 0);
			o = recv_or_die(k);
			printf("%s\n", o);
			if (expected[i] && strcmp(expected_line(i, j), o)) {
				fprintf(stderr, "# op %u `%s` mm %d diverges from the model\n# kernel:          %s\n# model predicted: %s\n",
					i, op_text[i], k, o, expected_line(i, j));
				bad = 1;
			}
			j++;
			free(o);
		}
	}
	for (k = 0; k < MAX_MMS; k++)
		if (pids[k]) {
			cmd(k, 3, 0, 0);
			wait_exit(pids[k]);
		}
	waitpid(pids[0], NULL, 0);
	return bad;
}
"##;

/// The C reproducer of `prog` (see the module doc).
pub fn emit_c(prog: &Program) -> Result<String, String> {
    if prog.ops.len() > u32::MAX as usize {
        return Err("too many ops".into());
    }
    // Where the fault plan fails an allocation: (op, index within the op).
    let policy = exec::program_policy(prog, Some("deposit"), &[])?;
    let cfg = RunConfig::new(policy, Geometry::KERNEL);
    let mut k = exec::build(prog, &cfg);
    k.alloc.record = true;
    let mut spans = vec![(0usize, 0usize); prog.ops.len()];
    let mut results = Vec::new();
    exec::run_on(
        &mut k,
        prog,
        &mut results,
        &mut |k, i, phase| {
            if phase == 0 {
                spans[i].0 = k.alloc.log.len();
            } else {
                spans[i].1 = k.alloc.log.len();
            }
        },
        false,
    );
    let log = k.alloc.log.clone();
    let fail_at = |i: usize| -> Option<(usize, String)> {
        let (a, b) = spans[i];
        log.get(a..b)?.iter().enumerate().find_map(|(j, r)| {
            r.failed.then(|| {
                (
                    j + 1,
                    format!("{} call #{} from {}", r.kind.name(), r.call, r.site),
                )
            })
        })
    };
    // The deposit model's prediction (without a fault plan only: fail-nth is approximate).
    let expected = if prog.faults.pte_alloc.is_never() && prog.faults.thp.is_never() {
        Some(real::model_run(prog, real::Host::read().linux(), &[]).t)
    } else {
        None
    };

    let mut c = String::new();
    let _ = writeln!(c, "/*\n * splitfuzz reproducer (generated by `splitfuzz emit-c`). Build: cc -O2 -Wall repro.c\n *");
    for l in prog.to_text().lines() {
        let _ = writeln!(c, " *   {}", l.replace("*/", "* /"));
    }
    let _ = writeln!(
        c,
        " *\n * Needs THP (madvise or always) and PAGEMAP_SCAN (Linux 6.7+). Prints after every op\n * `op I res R` and one line per live process: change of VmPTE in tables, anon pages\n * and THPs of the arena (smaps), its VMAs, per-page state (PAGEMAP_SCAN: . none,\n * p anon, z zero page, H THP PMD, Z huge zero PMD, s swap) and the tag read from each\n * present page (wOP: written by op OP). Lines that differ from the deposit model's\n * prediction are reported on stderr; exit status 1 then.\n */"
    );
    c.push_str(
        "#define _GNU_SOURCE\n#include <ctype.h>\n#include <errno.h>\n#include <fcntl.h>\n#include <poll.h>\n#include <signal.h>\n#include <stdarg.h>\n#include <stdint.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <sys/ioctl.h>\n#include <sys/mman.h>\n#include <sys/syscall.h>\n#include <sys/wait.h>\n#include <unistd.h>\n\n#ifndef MAP_FIXED_NOREPLACE\n#define MAP_FIXED_NOREPLACE 0x100000\n#endif\n#ifndef SYS_pidfd_open\n#define SYS_pidfd_open 434\n#endif\n",
    );
    let _ = writeln!(c, "#define ARENA_BASE {ARENA_BASE:#x}ULL");
    let _ = writeln!(c, "#define ARENA_SIZE {ARENA_SIZE:#x}ULL");
    let _ = writeln!(c, "#define NPAGES {NPAGES}");
    let _ = writeln!(c, "#define GUARD_LO {GUARD_LO:#x}ULL");
    let _ = writeln!(c, "#define GUARD_HI {GUARD_HI:#x}ULL");
    let _ = writeln!(c, "#define MAX_MMS {MAX_MMS}");
    let n = prog.ops.len();
    let _ = writeln!(c, "#define NR_OPS {n}");
    // Op tables (at least one element so empty programs compile).
    let kinds: String = prog
        .ops
        .iter()
        .map(|l| match l.op {
            Op::Fork => 'f',
            Op::Exit => 'x',
            _ => 'o',
        })
        .collect();
    let _ = writeln!(c, "static const char op_kind[] = \"{kinds}\";");
    let _ = writeln!(
        c,
        "static const int op_mm[] = {{ {} }};",
        if n == 0 {
            "0".to_string()
        } else {
            prog.ops
                .iter()
                .map(|l| l.mm.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let _ = writeln!(c, "static const char *const op_text[] = {{");
    for l in &prog.ops {
        let _ = writeln!(c, "\t\"{l}\",");
    }
    let _ = writeln!(c, "\t\"\"\n}};");
    let _ = writeln!(
        c,
        "/* The deposit model's prediction: result, then one line per live mm. */"
    );
    let _ = writeln!(c, "static const char *const expected[] = {{");
    for i in 0..n {
        match expected
            .as_ref()
            .and_then(|t| t.results[i].as_ref().map(|r| (r, &t.obs[i])))
        {
            Some((r, obs)) => {
                let _ = write!(c, "\t\"{r}");
                for o in obs {
                    let _ = write!(c, "\\n\"\n\t\"{o}");
                }
                let _ = writeln!(c, "\",");
            }
            None => {
                let _ = writeln!(c, "\tNULL,");
            }
        }
    }
    let _ = writeln!(c, "\tNULL\n}};");
    c.push_str(
        "\n/* Line j (0-based) after the result line of expected[i]. */\nstatic char expected_buf[1 << 17];\nstatic const char *expected_line(unsigned i, int j)\n{\n\tconst char *p = expected[i];\n\tsize_t n;\n\tint k;\n\tfor (k = 0; k <= j && p; k++) {\n\t\tp = strchr(p, '\\n');\n\t\tp = p ? p + 1 : NULL;\n\t}\n\tif (!p)\n\t\treturn \"(no line)\";\n\tn = strcspn(p, \"\\n\");\n\tif (n >= sizeof(expected_buf))\n\t\tn = sizeof(expected_buf) - 1;\n\tmemcpy(expected_buf, p, n);\n\texpected_buf[n] = 0;\n\treturn expected_buf;\n}\n",
    );
    c.push_str(RUNTIME);
    // do_op
    c.push_str("\nstatic const char *do_op(unsigned i)\n{\n\tswitch (i) {\n");
    for (i, l) in prog.ops.iter().enumerate() {
        let _ = writeln!(c, "\tcase {i}: /* {l} */");
        if let Some((nth, what)) = fail_at(i) {
            let _ = writeln!(c, "\t\tfail_nth({nth}); /* model: {what} fails */");
        }
        let body = match l.op {
            Op::Mmap { start, len, thp } => {
                format!("return do_mmap({start:#x}, {len:#x}, {});", thp as u8)
            }
            Op::Munmap { start, len } => format!("return res(munmap(A({start:#x}), {len:#x}));"),
            Op::Mprotect { start, len, write } => format!(
                "return res(mprotect(A({start:#x}), {len:#x}, {}));",
                if write {
                    "PROT_READ | PROT_WRITE"
                } else {
                    "PROT_READ"
                }
            ),
            Op::Touch { start, len, write } => {
                format!(
                    "return do_touch({i}, {start:#x}, {len:#x}, {});",
                    write as u8
                )
            }
            Op::Madvise { start, len, advice } => format!(
                "return res(madvise(A({start:#x}), {len:#x}, {}));",
                match advice {
                    Advice::Dontneed => "MADV_DONTNEED",
                    Advice::Free => "MADV_FREE",
                    Advice::Cold => "MADV_COLD_",
                    Advice::Pageout => "MADV_PAGEOUT_",
                    Advice::Collapse => "MADV_COLLAPSE_",
                    Advice::GuardInstall => "102 /* MADV_GUARD_INSTALL */",
                    Advice::GuardRemove => "103 /* MADV_GUARD_REMOVE */",
                }
            ),
            Op::Mremap { old, len, new } => {
                format!("return do_mremap({old:#x}, {len:#x}, {new:#x});")
            }
            Op::Fork | Op::Exit => "return \"ok\"; /* done by mm_loop() */".to_string(),
            ref op => {
                let why = real::Host::read()
                    .unsupported(op)
                    .unwrap_or("no user-space trigger");
                return Err(format!("op {i} `{l}` cannot be reproduced in C: {why}"));
            }
        };
        let _ = writeln!(c, "\t\t{body}");
    }
    c.push_str("\t}\n\treturn \"EINVAL\";\n}\n");
    Ok(c)
}
