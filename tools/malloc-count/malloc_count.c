// Counts the heap allocations of a process it is preloaded into (LD_PRELOAD), for
// tools/bench-allocations: every malloc, calloc, realloc, posix_memalign, aligned_alloc and
// memalign is one allocation. On SIGUSR2 it appends "allocations=N frees=M" to the file named
// by MALLOC_COUNT_OUT (only async-signal-safe calls in the handler). Not for production.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_ulong allocations;
static atomic_ulong frees;

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

void *malloc(size_t size) {
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    return __libc_calloc(count, size);
}

void *realloc(void *pointer, size_t size) {
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    return __libc_realloc(pointer, size);
}

void free(void *pointer) {
    if (pointer) atomic_fetch_add_explicit(&frees, 1, memory_order_relaxed);
    __libc_free(pointer);
}

int posix_memalign(void **result, size_t alignment, size_t size) {
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    void *pointer = __libc_memalign(alignment, size);
    if (!pointer) return 12;  // ENOMEM
    *result = pointer;
    return 0;
}

void *aligned_alloc(size_t alignment, size_t size) {
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    return __libc_memalign(alignment, size);
}

void *memalign(size_t alignment, size_t size) {
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    return __libc_memalign(alignment, size);
}

static void write_number(int fd, unsigned long value) {
    char digits[24];
    int length = 0;
    do {
        digits[sizeof(digits) - 1 - length] = (char)('0' + value % 10);
        value /= 10;
        length++;
    } while (value > 0 && length < (int)sizeof(digits));
    (void)!write(fd, digits + sizeof(digits) - length, (size_t)length);
}

static void report(int signal) {
    (void)signal;
    const char *path = getenv("MALLOC_COUNT_OUT");
    if (!path) return;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return;
    (void)!write(fd, "allocations=", 12);
    write_number(fd, atomic_load(&allocations));
    (void)!write(fd, " frees=", 7);
    write_number(fd, atomic_load(&frees));
    (void)!write(fd, "\n", 1);
    close(fd);
}

__attribute__((constructor)) static void install(void) {
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = report;
    action.sa_flags = SA_RESTART;
    sigaction(SIGUSR2, &action, NULL);
}
