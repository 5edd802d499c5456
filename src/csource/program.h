/*
 * An example of what `splitfuzz emit-c` puts in place of runtime.c's
 * `#include "program.h"` line: the program's #defines and tables, here of the
 * one-op program `mmap 0 2M thp` (no plan, no memcg trigger, no finding). It
 * exists so that runtime.c compiles on its own (tests/csource.rs); no
 * reproducer includes it. The names are the interface between mod.rs and
 * runtime.c: a name the runtime starts to use is added here and in mod.rs.
 */
#ifndef SPLITFUZZ_PROGRAM_H
#define SPLITFUZZ_PROGRAM_H

/* The executor's geometry (src/host/, src/prog/): the arena, the pages in it,
 * the two guard pages around it, the most processes a program has. */
#define ARENA_BASE 0x7e3fff000000ULL
#define ARENA_SIZE 0x2000000ULL
#define NPAGES 8192
#define GUARD_LO 0x7e3ffec00000ULL
#define GUARD_HI 0x7e4001400000ULL
#define MAX_MMS 4
/* The program: its ops, its fault plans (HAS_PLAN: written to the kernel
 * patch's debugfs), the memcg trigger, which features it needs. */
#define NR_OPS 1
#define HAS_PLAN 0
#define MEMCG 0
#define PTE_PLAN "never"
#define THP_PLAN "never"
#define UFFD_USE 0
#define UFFD_ASYNC 0
#define GUARD_USE 0
/* The model's finding: the op (-1: none), the invariant, its message. */
#define VIOLATION_OP -1
#define VIOLATION_KIND ""
#define VIOLATION_TEXT ""
/* Per op (each with one more element than NR_OPS): f fork, x exit, t touch,
 * o other; the mm that runs it; the memcg slack; its text. */
static const char op_kind[] = "o";
static const int op_mm[] = { 0 };
static const long limit_slack[] = { -1, -1 };
static const char *const op_text[] = {
	"mmap 0 2M thp",
	""
};
/* The model's prediction per op (result line, then one line per live mm),
 * the allocation counts after it, whether it may hang (an OOM loop). */
static const char *const expected[] = {
	"ok\n"
	"mm 0 pte 0 anon 0 thp 0 vmas 0-2M:rw+h pages .8192 data -*8192",
	NULL
};
static const long expected_alloc[][2] = {
	{ -1, -1 },
	{ -1, -1 }
};
static const char hung_ok[] = {
	0,
	0
};

/* emit-c writes the program's do_op() after the runtime (a switch over the
 * ops calling the runtime's do_*()); runtime.c declares it. */
static const char *do_op(unsigned i)
{
	return i < NR_OPS ? "ok" : "EINVAL";
}

#endif
