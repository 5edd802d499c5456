/*
 * The runtime of the C reproducers that `splitfuzz emit-c` writes
 * (src/csource/mod.rs): the C executor. It re-implements the Rust executor
 * (src/host/) op for op and line for line: one process per mm driven over
 * pipes, observation via smaps, PAGEMAP_SCAN and pagemap, the userfaultfd
 * handler, reclaim, pins, and the memcg trigger. docs/csource.md says why
 * there are two executors and how they are kept in agreement.
 *
 * emit-c copies this file from `#define _GNU_SOURCE` on, verbatim, into every
 * reproducer: a comment on the program first, then the lines below up to
 * `#include "program.h"`, then in place of that line the program's #defines
 * and tables, then the rest of this file, then the program's do_op(). This
 * comment is not copied.
 *
 * program.h beside this file is an example program (the #defines and tables
 * the runtime uses, and a stub do_op()), so that the file compiles on its own:
 *   cc -std=gnu11 -O2 -Wall -Wextra -Werror -fsyntax-only src/csource/runtime.c
 * (tests/csource.rs does that). Style: the kernel's (tabs, C89-style
 * declarations at the top of a block).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#include "program.h"

/* Line j (0-based) after the result line of expected[i]. */
static char expected_buf[1 << 17];
static const char *expected_line(unsigned i, int j)
{
	const char *p = expected[i];
	size_t n;
	int k;
	for (k = 0; k <= j && p; k++) {
		p = strchr(p, '\n');
		p = p ? p + 1 : NULL;
	}
	if (!p)
		return "(no line)";
	n = strcspn(p, "\n");
	if (n >= sizeof(expected_buf))
		n = sizeof(expected_buf) - 1;
	memcpy(expected_buf, p, n);
	expected_buf[n] = 0;
	return expected_buf;
}

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
#define PM_PFN_MASK ((1ULL << 55) - 1)
#define PM_GUARD_REGION (1ULL << 58)
#define PM_SWAP (1ULL << 62)
#define PM_PRESENT (1ULL << 63)
#define MARKER_SWAP_TYPE_MIN 24
#define SF "/sys/kernel/debug/splitfuzz"
#define UFFDIO_API_ 0xC018AA3FUL
#define UFFDIO_REGISTER_ 0xC020AA00UL
#define UFFDIO_UNREGISTER_ 0x8010AA01UL
#define UFFDIO_WRITEPROTECT_ 0xC018AA06UL
#define UFFDIO_MOVE_ 0xC028AA05UL
#define UFFD_FEATURE_WP_UNPOPULATED_ (1ULL << 13)
#define UFFD_FEATURE_WP_ASYNC_ (1ULL << 15)
#define UFFD_FEATURE_MOVE_ (1ULL << 16)
#define PIN_SLOTS 16384
#define OP_TIMEOUT_MS 10000

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
static uint64_t pm[NPAGES];
static int uffd = -1, ring = -1, uffd_move_ok;
static char handler_stack[256 << 10];
static int pin_pg[PIN_SLOTS], pin_slot[PIN_SLOTS], npins, free_slot[PIN_SLOTS], nfree;
static uint64_t kf[1024];
static int kpageflags_fd = -1, kpagecount_fd = -1;

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
	/* PTE markers are "swapped" to PAGEMAP_SCAN: pagemap tells a guard marker
	 * (g) and a uffd-wp marker (a none PTE with its uffd-wp bit: .) apart. */
	if (memchr(states, 's', NPAGES)) {
		uint64_t i;
		if (pread(pagemap_fd, pm, sizeof(pm), (ARENA_BASE / PAGE) * 8) != (ssize_t)sizeof(pm))
			return -1;
		for (i = 0; i < NPAGES; i++) {
			if (states[i] != 's')
				continue;
			if (pm[i] & PM_GUARD_REGION)
				states[i] = 'g';
			else if ((pm[i] & PM_SWAP) && ((pm[i] & PM_PFN_MASK) & 0x1f) >= MARKER_SWAP_TYPE_MIN)
				states[i] = '.';
		}
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

/* Read or write every page; pages outside a VMA, writes to read-only ones and
 * guard regions are skipped: the kernel would send SIGSEGV, the model returns
 * EFAULT. */
static long touch_limit = -1;
static void cg_limit(long slack);

static __attribute__((unused)) const char *do_touch(unsigned op, uint64_t s, uint64_t l, int write)
{
	uint64_t pg, lo = s / PAGE;
	int w, guards = 0;
	read_smaps();
	if (GUARD_USE)
		guards = pread(pagemap_fd, pm, (l / PAGE) * 8, (ARENA_BASE / PAGE + lo) * 8) == (ssize_t)((l / PAGE) * 8);
	/* The memcg trigger: the limit starts after the reads (smaps' buffer is charged). */
	if (touch_limit >= 0) {
		cg_limit(touch_limit);
		touch_limit = -1;
	}
	for (pg = lo; pg < (s + l) / PAGE; pg++) {
		volatile uint64_t *a = (volatile uint64_t *)(ARENA_BASE + pg * PAGE);
		if (!vma_at(pg, &w))
			continue;
		if (guards && (pm[pg - lo] & PM_GUARD_REGION))
			continue;
		if (write && w)
			*a = tag(op, pg);
		else if (!write)
			(void)*a;
	}
	return "ok";
}

/* ---- our kernel patch's fault plans */

static int sf_write(const char *f, const char *v)
{
	int fd = open(f, O_WRONLY);
	ssize_t n;
	if (fd < 0)
		return -1;
	n = write(fd, v, strlen(v));
	close(fd);
	return n == (ssize_t)strlen(v) ? 0 : -1;
}

static long sf_read(const char *f)
{
	char b[32] = "";
	int fd = open(f, O_RDONLY);
	ssize_t n;
	if (fd < 0)
		return -1;
	n = read(fd, b, sizeof(b) - 1);
	close(fd);
	return n > 0 ? atol(b) : -1;
}

static void arm_plans(int on)
{
	char w[64];
	if (!HAS_PLAN)
		return;
	snprintf(w, sizeof(w), "%llx %llx", ARENA_BASE, ARENA_BASE + ARENA_SIZE);
	if (sf_write(SF "/window", w) || sf_write(SF "/pte_alloc/plan", on ? PTE_PLAN : "never") ||
	    sf_write(SF "/thp/plan", on ? THP_PLAN : "never")) {
		fprintf(stderr, "# cannot write the fault plan to " SF ": %s\n", strerror(errno));
		exit(2);
	}
}

/* ---- the memcg trigger: no fault injection; the program's processes run in
 * one cgroup-v2 memory cgroup with oom_score_adj -1000, and each op that holds
 * a planned failure runs with memory.max below the cgroup's usage, so every
 * charged allocation of that op fails (page tables are charged:
 * GFP_PGTABLE_USER has __GFP_ACCOUNT; THP folios: mem_cgroup_charge() in
 * vma_alloc_anon_folio_pmd()). The memcg OOM killer finds no victim
 * (mm/oom_kill.c: oom_score_adj -1000 is never chosen) and the charge fails
 * (mm/memcontrol.c try_charge_memcg()). */

static char cg_dir[128];
static int cg_max = -1, cg_cur = -1, cg_swap = -1;

static uint64_t cg_read_u64(int fd)
{
	char b[32];
	ssize_t n = pread(fd, b, sizeof(b) - 1, 0);
	if (n <= 0)
		return 0;
	b[n] = 0;
	return strtoull(b, NULL, 10);
}

static void cg_put(int fd, uint64_t v)
{
	char b[32];
	int n = snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
	if (pwrite(fd, b, n, 0) < 0) {
		/* The write still drained the stocks and reclaimed; the limit holds. */
	}
}

/* In mm 0, before any op: join the cgroup, become unkillable by the OOM killer,
 * open the control files (their fds are inherited by forked processes, so
 * setting and lifting the limit later needs no open() and no allocation). */
static void cg_join(void)
{
	char f[192];
	if (!MEMCG)
		return;
	snprintf(f, sizeof(f), "%s/cgroup.procs", cg_dir);
	if (sf_write(f, "0") || sf_write("/proc/self/oom_score_adj", "-1000")) {
		fprintf(stderr, "# joining %s: %s\n", cg_dir, strerror(errno));
		_exit(2);
	}
	snprintf(f, sizeof(f), "%s/memory.max", cg_dir);
	cg_max = open(f, O_WRONLY);
	snprintf(f, sizeof(f), "%s/memory.current", cg_dir);
	cg_cur = open(f, O_RDONLY);
	snprintf(f, sizeof(f), "%s/memory.swap.max", cg_dir);
	cg_swap = open(f, O_WRONLY);
	if (cg_max < 0 || cg_cur < 0 || cg_swap < 0) {
		fprintf(stderr, "# %s: no memory.max/current/swap.max (a kernel without CONFIG_MEMCG or CONFIG_SWAP?)\n", cg_dir);
		_exit(2);
	}
	/* The first read allocates the seq_file buffer; later reads reuse it. */
	cg_read_u64(cg_cur);
}

/* Put the cgroup at its limit: no swap (reclaim must not make room by swapping
 * the program out), then memory.max one page below the usage, less `slack`
 * pages (what the op itself frees before its last charge), rewritten until the
 * usage stops dropping: each write drains the per-cpu charge stocks
 * (memory_max_write() -> drain_all_stock(); other CPUs' asynchronously). */
static void cg_limit(long slack)
{
	uint64_t cur, last = ~0ULL;
	struct timespec ts = { 0, 2000000 };
	int n;
	if (pwrite(cg_swap, "0", 1, 0) < 0)
		return;
	for (n = 0; n < 16; n++) {
		cur = cg_read_u64(cg_cur);
		if (n >= 4 && cur == last)
			break;
		cg_put(cg_max, cur > (uint64_t)(1 + slack) * PAGE + PAGE ? cur - (uint64_t)(1 + slack) * PAGE : PAGE);
		nanosleep(&ts, NULL);
		last = cg_read_u64(cg_cur);
	}
}

static void cg_lift(void)
{
	if (pwrite(cg_max, "max", 3, 0) < 0 || pwrite(cg_swap, "max", 3, 0) < 0) {
		/* Lifted from the parent after the op, see main(). */
	}
}

/* The parent (not in the cgroup): create it, enabling the memory controller. */
static int cg_create(void)
{
	char f[192];
	if (!MEMCG)
		return 0;
	if (read_file("/sys/fs/cgroup/cgroup.subtree_control") || !strstr(buf, "memory"))
		if (sf_write("/sys/fs/cgroup/cgroup.subtree_control", "+memory")) {
			fprintf(stderr, "# enabling the memory controller in /sys/fs/cgroup (cgroup v2, root): %s\n", strerror(errno));
			return -1;
		}
	snprintf(cg_dir, sizeof(cg_dir), "/sys/fs/cgroup/splitfuzz-repro-%d", (int)getpid());
	if (mkdir(cg_dir, 0755)) {
		fprintf(stderr, "# mkdir %s: %s\n", cg_dir, strerror(errno));
		return -1;
	}
	snprintf(f, sizeof(f), "%s/memory.max", cg_dir);
	if (access(f, W_OK)) {
		fprintf(stderr, "# %s has no memory.max (a kernel without CONFIG_MEMCG?)\n", cg_dir);
		rmdir(cg_dir);
		return -1;
	}
	return 0;
}

static void cg_lift_outside(void)
{
	char f[192];
	if (!MEMCG)
		return;
	snprintf(f, sizeof(f), "%s/memory.max", cg_dir);
	sf_write(f, "max");
	snprintf(f, sizeof(f), "%s/memory.swap.max", cg_dir);
	sf_write(f, "max");
}

static void cg_events(unsigned i)
{
	char f[192], *p, *q;
	snprintf(f, sizeof(f), "%s/memory.events", cg_dir);
	if (read_file(f))
		return;
	for (p = buf; (q = strchr(p, '\n')); p = q + 1)
		*q = ' ';
	printf("# memory.events after op %u: %s\n", i, buf);
}

/* ---- pins: one io_uring fixed buffer per page (FOLL_WRITE|FOLL_LONGTERM) */

static long ring_set_slot(int slot, uint64_t addr)
{
	struct { uint64_t base, len; } iov = { addr, addr ? PAGE : 0 };
	struct { uint32_t offset, resv; uint64_t data, tags; uint32_t nr, resv2; } upd = { slot, 0, (uint64_t)&iov, 0, 1, 0 };
	return syscall(SYS_io_uring_register, ring, 16 /* IORING_REGISTER_BUFFERS_UPDATE */, &upd, 32);
}

static void ring_open(void)
{
	char params[120] = { 0 };
	struct { uint32_t nr, flags; uint64_t resv2, data, tags; } reg = { PIN_SLOTS, 1 /* SPARSE */, 0, 0, 0 };
	int i;
	ring = syscall(SYS_io_uring_setup, 1, params);
	if (ring >= 0 && syscall(SYS_io_uring_register, ring, 15 /* IORING_REGISTER_BUFFERS2 */, &reg, 32) < 0) {
		close(ring);
		ring = -1;
	}
	npins = 0;
	nfree = 0;
	for (i = PIN_SLOTS - 1; i >= 0; i--)
		free_slot[nfree++] = i;
}

static __attribute__((unused)) const char *do_pin(uint64_t s, uint64_t l)
{
	uint64_t pg;
	if (ring < 0)
		return "UNSUPPORTED pin: io_uring";
	for (pg = s / PAGE; pg < (s + l) / PAGE; pg++) {
		int slot = free_slot[--nfree];
		if (ring_set_slot(slot, ARENA_BASE + pg * PAGE) != 1) {
			free_slot[nfree++] = slot;
			return res(-1);
		}
		pin_pg[npins] = pg;
		pin_slot[npins++] = slot;
	}
	return "ok";
}

static __attribute__((unused)) const char *do_unpin(uint64_t s, uint64_t l)
{
	int i = 0;
	if (ring < 0)
		return "UNSUPPORTED pin: io_uring";
	while (i < npins) {
		if ((uint64_t)pin_pg[i] >= s / PAGE && (uint64_t)pin_pg[i] < (s + l) / PAGE) {
			ring_set_slot(pin_slot[i], 0);
			free_slot[nfree++] = pin_slot[i];
			pin_pg[i] = pin_pg[--npins];
			pin_slot[i] = pin_slot[npins];
		} else
			i++;
	}
	return "ok";
}

static void release_pins(void)
{
	if (ring >= 0 && npins)
		syscall(SYS_io_uring_register, ring, 1 /* IORING_UNREGISTER_BUFFERS */, NULL, 0);
	npins = 0;
}

/* ---- reclaim: MADV_PAGEOUT of exactly the pages that map the folio here */

static int have_swap(void)
{
	char *p;
	if (read_file("/proc/meminfo"))
		return 0;
	p = strstr(buf, "SwapTotal:");
	return p && strtol(p + 10, NULL, 10) > 0;
}

static __attribute__((unused)) const char *do_pageout(uint64_t s, uint64_t l)
{
	if (!have_swap())
		return "UNSUPPORTED madvise pageout: no swap device";
	return res(madvise(A(s), l, MADV_PAGEOUT_));
}

static __attribute__((unused)) const char *do_reclaim(uint64_t addr)
{
	uint64_t pg = addr / PAGE, e, pfn, lo, f0, f1, i, n, here[512] = { 0 };
	int at, j, head = -1;
	if (!have_swap())
		return "UNSUPPORTED reclaim: no swap device";
	if (pread(pagemap_fd, &e, 8, (ARENA_BASE / PAGE + pg) * 8) != 8)
		return "UNSUPPORTED reclaim: pagemap";
	if (!(e & PM_PRESENT))
		return "ok";
	pfn = e & PM_PFN_MASK;
	if (!pfn || kpageflags_fd < 0 || kpagecount_fd < 0)
		return "UNSUPPORTED reclaim: needs root (pagemap PFNs, /proc/kpageflags)";
	lo = pfn > 511 ? pfn - 511 : 0;
	n = pfn - lo + 1 + 512;
	if (pread(kpageflags_fd, kf, n * 8, lo * 8) != (ssize_t)(n * 8))
		return "UNSUPPORTED reclaim: kpageflags";
	at = pfn - lo;
	if (kf[at] & (1ULL << 24)) /* KPF_ZERO_PAGE */
		return "ok";
	if (!(kf[at] & ((1ULL << 15) | (1ULL << 16)))) {
		f0 = pfn;
		f1 = pfn + 1;
	} else {
		for (j = at; j >= 0; j--)
			if (kf[j] & (1ULL << 15)) {
				head = j;
				break;
			}
		if (head < 0)
			return "UNSUPPORTED reclaim: no compound head";
		for (i = head + 1; i < n && (kf[i] & (1ULL << 16)) && !(kf[i] & (1ULL << 15)); i++)
			;
		f0 = lo + head;
		f1 = lo + i;
	}
	if (pread(pagemap_fd, pm, sizeof(pm), (ARENA_BASE / PAGE) * 8) != (ssize_t)sizeof(pm))
		return "UNSUPPORTED reclaim: pagemap";
	for (i = 0; i < NPAGES; i++)
		if ((pm[i] & PM_PRESENT) && (pm[i] & PM_PFN_MASK) >= f0 && (pm[i] & PM_PFN_MASK) < f1)
			here[(pm[i] & PM_PFN_MASK) - f0]++;
	if (pread(kpagecount_fd, kf, (f1 - f0) * 8, f0 * 8) != (ssize_t)((f1 - f0) * 8))
		return "UNSUPPORTED reclaim: kpagecount";
	for (i = 0; i < f1 - f0; i++)
		if (kf[i] > here[i])
			return "UNSUPPORTED reclaim: the folio is mapped by another process too (MADV_PAGEOUT skips shared folios)";
	for (i = 0; i < NPAGES;) {
		uint64_t k = i;
		while (k < NPAGES && (pm[k] & PM_PRESENT) && (pm[k] & PM_PFN_MASK) >= f0 && (pm[k] & PM_PFN_MASK) < f1 &&
		       (k == i || (pm[k] & PM_PFN_MASK) == (pm[k - 1] & PM_PFN_MASK) + 1))
			k++;
		if (k > i) {
			if (madvise((void *)(ARENA_BASE + i * PAGE), (k - i) * PAGE, MADV_PAGEOUT_))
				return res(-1);
			i = k;
		} else
			i++;
	}
	return "ok";
}

/* ---- migrate: move_pages() of the page to the other node */

static __attribute__((unused)) const char *do_migrate(uint64_t addr)
{
	void *page = (void *)(ARENA_BASE + addr / PAGE * PAGE);
	int status = 0, node;
	if (syscall(SYS_move_pages, 0, 1, &page, NULL, &status, 0) < 0)
		return "UNSUPPORTED migrate: move_pages";
	if (status < 0)
		return "ok";
	node = status == 0 ? 1 : 0;
	return syscall(SYS_move_pages, 0, 1, &page, &node, &status, 4 /* MPOL_MF_MOVE_ALL */) < 0 ? res(-1) : "ok";
}

static __attribute__((unused)) const char *do_mbind(uint64_t s, uint64_t l, int node)
{
	unsigned long mask = 1UL << node;
	return res(syscall(SYS_mbind, A(s), l, 2 /* MPOL_BIND */, &mask, 65, 2 /* MPOL_MF_MOVE */));
}

/* ---- userfaultfd (write-protect), with a handler thread unless `uffd async` */

static void *uffd_handler(void *arg)
{
	unsigned char msg[32];
	(void)arg;
	for (;;) {
		uint64_t flags, addr, wp[3];
		ssize_t n = read(uffd, msg, 32);
		if (n != 32) {
			if (n < 0 && errno == EINTR)
				continue;
			return NULL;
		}
		memcpy(&flags, msg + 8, 8);
		memcpy(&addr, msg + 16, 8);
		if (msg[0] != 0x12 || !(flags & 2))
			continue;
		wp[0] = addr & ~(PAGE - 1);
		wp[1] = PAGE;
		wp[2] = 0;
		while (ioctl(uffd, UFFDIO_WRITEPROTECT_, wp) && (errno == ENOMEM || errno == EAGAIN || errno == EINTR))
			sched_yield();
	}
}

static void uffd_open(void)
{
	uint64_t api[3];
	pthread_attr_t attr;
	pthread_t t;
	int i;
	if (!UFFD_USE)
		return;
	for (i = 0; i < 2; i++) {
		uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
		if (uffd < 0)
			return;
		api[0] = 0xAA;
		api[1] = (i == 0 ? UFFD_FEATURE_MOVE_ : 0) |
			 (UFFD_ASYNC ? UFFD_FEATURE_WP_ASYNC_ | UFFD_FEATURE_WP_UNPOPULATED_ : 0);
		api[2] = 0;
		if (!ioctl(uffd, UFFDIO_API_, api)) {
			uffd_move_ok = i == 0;
			break;
		}
		close(uffd);
		uffd = -1;
	}
	if (uffd < 0 || UFFD_ASYNC)
		return;
	pthread_attr_init(&attr);
	pthread_attr_setstack(&attr, handler_stack, sizeof(handler_stack));
	pthread_create(&t, &attr, uffd_handler, NULL);
	pthread_attr_destroy(&attr);
}

static __attribute__((unused)) const char *do_uffd(unsigned long req, uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t arg[5] = { a, b, c, 0, 0 };
	if (uffd < 0)
		return "UNSUPPORTED uffd: userfaultfd";
	if (req == UFFDIO_MOVE_) {
		if (!uffd_move_ok)
			return "UNSUPPORTED uffd-move: UFFD_FEATURE_MOVE";
		arg[3] = 0;
	}
	return res(ioctl(uffd, req, arg));
}

static __attribute__((unused)) const char *do_pagemap_scan(uint64_t s, uint64_t l)
{
	uint64_t arg[12] = { 96, 3 /* WP_MATCHING | CHECK_WPASYNC */, ARENA_BASE + s, ARENA_BASE + s + l, 0,
			     (uint64_t)regions, NPAGES + 1, 0, 0, 2 /* PAGE_IS_WRITTEN */, 0, 2 };
	return ioctl(pagemap_fd, PAGEMAP_SCAN_, arg) < 0 ? res(-1) : "ok";
}

static const char *do_op(unsigned i);

static void setup(void)
{
	uint64_t g[2] = { GUARD_LO, GUARD_HI };
	unsigned long node0 = 1;
	struct rlimit nocore = { 0, 0 };
	void *p;
	int i;
	/* The program's processes are the tasks the plan counts (fork and new
	 * threads inherit make-it-fail); the plan is armed only once all is set up. */
	if (HAS_PLAN && sf_write("/proc/self/make-it-fail", "1")) {
		fprintf(stderr, "# /proc/self/make-it-fail: %s\n", strerror(errno));
		_exit(2);
	}
	setrlimit(RLIMIT_CORE, &nocore);
	cg_join();
	p = mmap(A(0), ARENA_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
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
	/* Every process allocates on node 0 unless a VMA policy says otherwise. */
	syscall(SYS_set_mempolicy, 2 /* MPOL_BIND */, &node0, 65);
	kpageflags_fd = open("/proc/kpageflags", O_RDONLY);
	kpagecount_fd = open("/proc/kpagecount", O_RDONLY);
	memset(handler_stack, 1, sizeof(handler_stack));
	uffd_open();
	ring_open();
	populate_outside_arena();
	base_pte_kb = vm_pte_kb();
}

static void mm_loop(void)
{
	char b[32];
	for (;;) {
		uint32_t c[4];
		int limited;
		if (read_all(cmd_fd[me][0], c, sizeof(c)))
			_exit(3);
		/* 4: an op at the cgroup's limit (c[3]: the pages it may free). */
		limited = c[0] == 4;
		if (limited) {
			c[0] = 1;
			if (op_kind[c[1]] == 't')
				touch_limit = c[3];
			else
				cg_limit(c[3]);
		}
		if (c[0] == 1 && op_kind[c[1]] == 'f') {
			pid_t pid;
			int e;
			if (c[2] >= MAX_MMS) {
				if (limited)
					cg_lift();
				send_str(resp_fd[me][1], "EAGAIN");
				continue;
			}
			pid = fork();
			e = errno;
			if (limited)
				cg_lift();
			if (pid < 0) {
				errno = e;
				send_str(resp_fd[me][1], res(-1));
				continue;
			}
			if (pid == 0) {
				me = c[2];
				close(pagemap_fd);
				pagemap_fd = open("/proc/self/pagemap", O_RDONLY);
				/* This mm's own userfaultfd and ring: the parent's registrations
				 * and pins belong to the parent's mm. */
				if (uffd >= 0)
					close(uffd);
				if (ring >= 0)
					close(ring);
				uffd = ring = -1;
				uffd_open();
				ring_open();
				populate_outside_arena();
				snprintf(b, sizeof(b), "ready %d", (int)getpid());
				send_str(resp_fd[me][1], b);
				continue;
			}
			send_str(resp_fd[me][1], "ok");
		} else if (c[0] == 1 && op_kind[c[1]] == 'x') {
			if (limited)
				cg_lift();
			release_pins();
			send_str(resp_fd[me][1], "ok");
			_exit(0);
		} else if (c[0] == 1) {
			const char *r = do_op(c[1]);
			if (limited)
				cg_lift();
			send_str(resp_fd[me][1], r);
		} else if (c[0] == 2) {
			if (observe())
				send_str(resp_fd[me][1], "error PAGEMAP_SCAN");
			else
				send_msg(resp_fd[me][1], out, outlen);
		} else {
			release_pins();
			_exit(0);
		}
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
	uint32_t c[4] = { kind, a, b, 0 };
	if (kind == 1 && MEMCG && limit_slack[a] >= 0) {
		c[0] = 4;
		c[3] = limit_slack[a];
	}
	write_all(cmd_fd[k][1], c, sizeof(c));
}

/* An answer within OP_TIMEOUT_MS, or NULL (the op did not return). */
static char *recv_timeout(int k)
{
	struct pollfd p = { resp_fd[k][0], POLLIN, 0 };
	if (poll(&p, 1, OP_TIMEOUT_MS) != 1)
		return NULL;
	return recv_msg(resp_fd[k][0]);
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

static void kill_all(pid_t *pids)
{
	int k;
	for (k = 0; k < MAX_MMS; k++)
		if (pids[k])
			kill(pids[k], SIGKILL);
}

int main(void)
{
	pid_t pids[MAX_MMS] = { 0 };
	int k, nprocs = 1, bad = 0, hung = -1;
	unsigned i;
	char line[64];
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (HAS_PLAN && access(SF "/pte_alloc/plan", W_OK)) {
		fprintf(stderr, "# this kernel has no splitfuzz fault plans (" SF "): build one with `splitfuzz vm build` "
				"(`--source DIR` applies kernel/patches/ to your tree), mount debugfs, and run as root\n");
		return 2;
	}
	if (MEMCG && cg_create())
		return 2;
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
	/* Free the huge zero folio if nothing maps it (its shrinker), so that its
	 * first use here allocates, as in the model's fresh kernel. */
	if (HAS_PLAN)
		sf_write("/proc/sys/vm/drop_caches", "2");
	arm_plans(1);
	for (i = 0; i < NR_OPS; i++) {
		char *r;
		int m = op_mm[i], j = 0;
		long pte, thp;
		if (!pids[m])
			continue;
		cmd(m, 1, i, nprocs);
		r = recv_timeout(m);
		if (!r) {
			printf("op %u did not return within %d s\n", i, OP_TIMEOUT_MS / 1000);
			hung = i;
			break;
		}
		if (!strncmp(r, "UNSUPPORTED ", 12)) {
			fprintf(stderr, "# op %u `%s` cannot run here: %s\n", i, op_text[i], r + 12);
			arm_plans(0);
			kill_all(pids);
			return 2;
		}
		if (op_kind[i] == 'f' && !strcmp(r, "ok")) {
			char *rd = recv_or_die(nprocs);
			pids[nprocs++] = atoi(rd + 6);
			free(rd);
		} else if (op_kind[i] == 'x') {
			wait_exit(pids[m]);
			pids[m] = 0;
		}
		printf("op %u res %s\n", i, r);
		if (MEMCG && limit_slack[i] >= 0)
			cg_events(i);
		if (expected[i] && (strncmp(expected[i], r, strlen(r)) || strcspn(expected[i], "\n") != strlen(r))) {
			fprintf(stderr, "# op %u `%s`: result %s, model predicted %s\n", i, op_text[i], r,
				strndup(expected[i], strcspn(expected[i], "\n")));
			bad = 1;
		}
		free(r);
		if (HAS_PLAN) {
			pte = sf_read(SF "/pte_alloc/calls");
			thp = sf_read(SF "/thp/calls");
			if (expected_alloc[i][0] >= 0 && (pte != expected_alloc[i][0] || thp != expected_alloc[i][1])) {
				fprintf(stderr, "# op %u `%s`: pte_alloc_one() calls %ld, THP allocations %ld so far; model predicted %ld, %ld\n",
					i, op_text[i], pte, thp, expected_alloc[i][0], expected_alloc[i][1]);
				bad = 1;
			}
		}
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
	arm_plans(0);
	/* A hung op's process never lifted its limit. */
	cg_lift_outside();
	if (MEMCG && hung >= 0 && limit_slack[hung] >= 0)
		cg_events(hung);
	if (hung >= 0) {
		/* A livelock the model predicts, or an OOM loop (a fault retried forever). */
		if (hung == VIOLATION_OP && !strcmp(VIOLATION_KIND, "no-livelock"))
			fprintf(stderr, "# op %d `%s` did not return: the livelock the model predicts\n", hung, op_text[hung]);
		else if (hung_ok[hung])
			fprintf(stderr, "# op %d `%s` did not return: %s (a fault retried forever; killable)\n",
				hung, op_text[hung], expected[hung] ? "the model predicts an OOM loop" : "an OOM loop");
		else {
			fprintf(stderr, "# op %d `%s` did not return within %d s%s\n", hung, op_text[hung],
				OP_TIMEOUT_MS / 1000, expected[hung] ? "; the model predicted it would" : "");
			bad = 1;
		}
		kill_all(pids);
	} else {
		if (VIOLATION_OP >= 0 && !strcmp(VIOLATION_KIND, "no-livelock") && VIOLATION_OP < NR_OPS) {
			fprintf(stderr, "# op %d `%s` returned; the model predicts a livelock\n", VIOLATION_OP, op_text[VIOLATION_OP]);
			bad = 1;
		}
		for (k = 0; k < MAX_MMS; k++)
			if (pids[k]) {
				cmd(k, 3, 0, 0);
				wait_exit(pids[k]);
			}
		waitpid(pids[0], NULL, 0);
	}
	if (MEMCG && hung < 0) {
		/* Empty once its processes are gone. */
		for (k = 0; k < 100 && rmdir(cg_dir); k++)
			usleep(10000);
	}
	if (VIOLATION_OP >= 0)
		fprintf(stderr, "# %s%s: %s\n", bad ? "not reproduced" : "reproduced",
			MEMCG ? " without fault injection (memory cgroup limit)" : "", VIOLATION_TEXT);
	return bad;
}
