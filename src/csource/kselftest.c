/*
 * The part of the kselftests that `splitfuzz emit-kselftest` writes
 * (src/csource/kselftest.rs) that comes after the runtime (runtime.c): it
 * runs one program through the runtime in a child process, keeps its
 * transcript, and reads the transcript back for the tests' assertions.
 *
 * emit-kselftest copies this file from its `#undef main` line on, verbatim;
 * this comment is not copied. What comes before it in a test file: the
 * runtime's includes, kselftest_harness.h, `struct sf_program` and the
 * macros through which the runtime reads the current program (generated),
 * and the runtime itself, whose main() is renamed sf_runtime_main().
 * Style: the kernel's.
 */
#undef main

/* The runtime's do_op(): the current program's. */
static const char *do_op(unsigned i)
{
	return sf_cur->do_op(i);
}

/* One run of a program: the runtime's exit status (0: every op returned or
 * hung where a hang is allowed, 1: an op hung where it may not, 2: it
 * cannot run here, -1: killed), its transcript (stdout) and stderr. */
struct sf_run {
	int status;
	char *out;
	char *err;
};

/* The longest a program may run: each op returns within OP_TIMEOUT_MS or
 * the runtime gives up on it. */
#define SF_RUN_TIMEOUT_S 240

static char *sf_slurp(int fd)
{
	off_t n = lseek(fd, 0, SEEK_END);
	char *s;
	if (n < 0)
		n = 0;
	s = calloc(1, n + 1);
	if (s && n && pread(fd, s, n, 0) != n)
		s[0] = 0;
	close(fd);
	return s ? s : "";
}

/* SPLITFUZZ_REPLAY=DIR: judge DIR/<program name>.out (a transcript saved
 * from a run, e.g. of the `emit-c` reproducer) instead of running. */
static const char *sf_replay_dir(void)
{
	const char *d = getenv("SPLITFUZZ_REPLAY");
	return d && *d ? d : NULL;
}

static void sf_run_program(const struct sf_program *p, struct sf_run *r)
{
	int o, e, st = 0, rc;
	pid_t pid;
	time_t t0 = time(NULL);
	char f[4096];
	r->status = 2;
	r->out = "";
	r->err = "";
	if (sf_replay_dir()) {
		snprintf(f, sizeof(f), "%s/%s.out", sf_replay_dir(), p->name);
		o = open(f, O_RDONLY);
		if (o < 0) {
			r->err = "SPLITFUZZ_REPLAY: no saved transcript for this program";
			return;
		}
		r->out = sf_slurp(o);
		r->status = 0;
		return;
	}
	o = memfd_create("splitfuzz-out", 0);
	e = memfd_create("splitfuzz-err", 0);
	if (o < 0 || e < 0) {
		r->err = "memfd_create() failed";
		return;
	}
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		r->err = "fork() failed";
		return;
	}
	if (pid == 0) {
		dup2(o, 1);
		dup2(e, 2);
		sf_cur = p;
		rc = sf_runtime_main();
		fflush(NULL);
		_exit(rc);
	}
	/* The runtime bounds every op; this bounds the runtime. */
	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (time(NULL) - t0 > SF_RUN_TIMEOUT_S) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			break;
		}
		usleep(20000);
	}
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	r->out = sf_slurp(o);
	r->err = sf_slurp(e);
}

/* The first line of `s` (a skip reason). */
static const char *sf_first_line(const char *s)
{
	static char b[512];
	size_t n = strcspn(s, "\n");
	while (*s == '#' || *s == ' ') {
		s++;
		n = strcspn(s, "\n");
	}
	if (n >= sizeof(b))
		n = sizeof(b) - 1;
	memcpy(b, s, n);
	b[n] = 0;
	return n ? b : "the runtime could not run the program here";
}

/* The transcript's line that starts with `op I WHAT`, or NULL. */
static const char *sf_op_line(const struct sf_run *r, unsigned i, const char *what)
{
	char key[64];
	const char *p = r->out;
	int n = snprintf(key, sizeof(key), "op %u %s", i, what);
	while (p && *p) {
		if (!strncmp(p, key, n))
			return p;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

/* Op i did not return within OP_TIMEOUT_MS. */
static int sf_hung(const struct sf_run *r, unsigned i)
{
	return sf_op_line(r, i, "did not return") != NULL;
}

/* Op i returned 0 (its result is `ok`). */
static __attribute__((unused)) int sf_ok(const struct sf_run *r, unsigned i)
{
	return sf_op_line(r, i, "res ok\n") != NULL;
}

/* The observation line of mm `mm` after op i (`mm K pte ... data ...`,
 * up to its newline), or NULL. */
static const char *sf_obs(const struct sf_run *r, unsigned i, int mm)
{
	char key[32];
	const char *p = sf_op_line(r, i, "res ");
	int n = snprintf(key, sizeof(key), "mm %d ", mm);
	while (p) {
		p = strchr(p, '\n');
		if (!p || !*++p || !strncmp(p, "op ", 3))
			return NULL;
		if (!strncmp(p, key, n))
			return p;
	}
	return NULL;
}

/* A line for the log: `obs` up to its newline. */
static const char *sf_line(const char *obs)
{
	static char b[4096];
	size_t n;
	if (!obs)
		return "(no observation)";
	n = strcspn(obs, "\n");
	if (n >= sizeof(b))
		n = sizeof(b) - 1;
	memcpy(b, obs, n);
	b[n] = 0;
	return b;
}

/* The field after ` NAME ` in an observation line. */
static const char *sf_field(const char *obs, const char *name)
{
	char key[16];
	const char *p, *end = obs + strcspn(obs, "\n");
	snprintf(key, sizeof(key), " %s ", name);
	p = strstr(obs, key);
	return p && p < end ? p + strlen(key) : NULL;
}

/* Page `pg`'s state in `pages` (. none, p anon, z zero, H THP PMD, Z huge
 * zero PMD, s swap, g guard), or 0. */
static char sf_page_state(const char *obs, uint64_t pg)
{
	const char *p = sf_field(obs, "pages");
	while (p && *p && *p != ' ' && *p != '\n') {
		char c = *p++;
		uint64_t n = strtoull(p, (char **)&p, 10);
		if (pg < n)
			return c;
		pg -= n;
	}
	return 0;
}

/* Page `pg`'s data token in `data` (0, wOP, -, ...) into `t`. */
static void sf_page_data(const char *obs, uint64_t pg, char *t, size_t size)
{
	const char *p = sf_field(obs, "data");
	snprintf(t, size, "?");
	while (p && *p && *p != ' ' && *p != '\n') {
		const char *star = strchr(p, '*');
		uint64_t n;
		if (!star)
			return;
		n = strtoull(star + 1, NULL, 10);
		if (pg < n) {
			snprintf(t, size, "%.*s", (int)(star - p), p);
			return;
		}
		pg -= n;
		p = star + 1 + strcspn(star + 1, ", \n");
		if (*p == ',')
			p++;
	}
}

/* A size as the runtime prints it (fmt_size: 0, 12K, 2M, 123). */
static uint64_t sf_size(const char **p)
{
	uint64_t v = strtoull(*p, (char **)p, 10);
	if (**p == 'K') {
		v <<= 10;
		(*p)++;
	} else if (**p == 'M') {
		v <<= 20;
		(*p)++;
	}
	return v;
}

/* Whether page `pg` of the arena is in a VMA (`vmas`). */
static __attribute__((unused)) int sf_page_mapped(const char *obs, uint64_t pg)
{
	const char *p = sf_field(obs, "vmas");
	if (!p || !strncmp(p, "none", 4))
		return 0;
	while (*p && *p != ' ' && *p != '\n') {
		uint64_t s = sf_size(&p), e;
		if (*p++ != '-')
			return 0;
		e = sf_size(&p);
		if (pg * PAGE >= s && pg * PAGE < e)
			return 1;
		p += strcspn(p, ", \n");
		if (*p == ',')
			p++;
	}
	return 0;
}

/* What a page of an observation line is checked for (a file's tests may
 * not use every check: unused is fine). */
static __attribute__((unused)) int sf_not_zero(const char *obs, uint64_t pg)
{
	char t[64];
	sf_page_data(obs, pg, t, sizeof(t));
	return strcmp(t, "0") && strcmp(t, "-");
}

static __attribute__((unused)) int sf_not_guard(const char *obs, uint64_t pg)
{
	return sf_page_mapped(obs, pg) && sf_page_state(obs, pg) != 'g';
}

/* Pages of [start, start + len) after op i in mm `mm` for which `is` holds
 * (-1: no observation). */
static __attribute__((unused)) long sf_pages(const struct sf_run *r, unsigned i, int mm, uint64_t start, uint64_t len,
		     int (*is)(const char *obs, uint64_t pg))
{
	const char *obs = sf_obs(r, i, mm);
	uint64_t pg;
	long n = 0;
	if (!obs)
		return -1;
	for (pg = start / PAGE; pg < (start + len) / PAGE; pg++)
		n += is(obs, pg);
	return n;
}

/* Pages that read something other than zero. */
#define sf_pages_not_zero(r, i, mm, start, len) sf_pages(r, i, mm, start, len, sf_not_zero)
/* Pages in a VMA. */
#define sf_pages_mapped(r, i, mm, start, len) sf_pages(r, i, mm, start, len, sf_page_mapped)
/* Pages in a VMA that are not guard regions. */
#define sf_pages_not_guard(r, i, mm, start, len) sf_pages(r, i, mm, start, len, sf_not_guard)

/* The transcript's `# ...` lines (memory.events under the memcg trigger)
 * and the runtime's stderr, to the test's log. */
static void sf_log_notes(const struct sf_run *r)
{
	const char *p;
	for (p = r->out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (*p == '#')
			ksft_print_msg("%s\n", sf_line(p + 2));
	for (p = r->err; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (*p && *p != '\n')
			ksft_print_msg("%s\n", sf_line(*p == '#' ? p + 2 : p));
}

/* Why a test cannot run here, or NULL. `inject`: it needs our fault-plan
 * interface too. */
static const char *sf_cannot_run(int inject)
{
	if (sf_replay_dir())
		return NULL;
	if (geteuid())
		return "needs root (a memory cgroup, /proc/kpageflags, drop_caches)";
	if (read_file("/sys/kernel/mm/transparent_hugepage/enabled"))
		return "no THP (CONFIG_TRANSPARENT_HUGEPAGE)";
	if (strstr(buf, "[never]"))
		return "THP is off (/sys/kernel/mm/transparent_hugepage/enabled: never)";
	if (inject) {
		if (access(SF "/pte_alloc/plan", W_OK))
			return "no splitfuzz fault-plan interface (" SF ": a kernel built with splitfuzz's kernel/patches/, debugfs mounted)";
		return NULL;
	}
	if (read_file("/sys/fs/cgroup/cgroup.controllers") || !strstr(buf, "memory"))
		return "no cgroup v2 memory controller at /sys/fs/cgroup";
	return NULL;
}

/* The tests without fault injection: a memory-cgroup limit makes the real
 * allocations fail. */
FIXTURE(memcg) {
	int unused;
};

FIXTURE_SETUP(memcg)
{
	const char *why = sf_cannot_run(0);
	self->unused = 0;
	if (why)
		SKIP(return, "%s", why);
}

FIXTURE_TEARDOWN(memcg)
{
}

/* The fault-injection variants: only where splitfuzz's debugfs interface is. */
FIXTURE(inject) {
	int unused;
};

FIXTURE_SETUP(inject)
{
	const char *why = sf_cannot_run(1);
	self->unused = 0;
	if (why)
		SKIP(return, "%s", why);
}

FIXTURE_TEARDOWN(inject)
{
}
