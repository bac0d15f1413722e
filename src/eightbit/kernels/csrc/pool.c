/* A small thread pool for the eightbit kernels, made for cores shared with other processes.
 *
 * With OpenMP's fork-join, a parallel region ends only when every thread of the team has arrived;
 * when the other core is busy with another process, the caller waits for a scheduler time slice
 * (milliseconds) for a worker that has not even started. Here the caller works too and waits only
 * for tasks that a worker has actually claimed: a worker that wakes up late finds no task left and
 * goes back to sleep without touching the finished call's data.
 *
 * Protocol: a call publishes (fn, ctx, ntasks) and a new generation g; the next task index lives
 * with g in one 64-bit word, so a task is claimed by a compare-and-swap that fails for a stale
 * generation. The call's data is read by a worker only after a successful claim, and the call
 * cannot return before that task is done. Idle workers poll briefly (yielding the core to other
 * runnable threads after a few microseconds), then sleep on a futex.
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "eightbit.h"

#define MAX_WORKERS 63
#define SPIN_NS 50000 /* how long an idle worker polls before it sleeps on the futex */
#define YIELD_NS 5000 /* after this, it yields the core between polls */

static struct {
    pthread_mutex_t lock; /* one parallel call at a time; a concurrent call runs serially */
    int nworkers;
    uint32_t gen;     /* futex word: generation of the latest call */
    uint32_t sleepers;
    uint64_t next;    /* (gen << 32) | next task index */
    uint64_t joined;  /* (gen << 32) | workers that joined the call */
    int64_t done;     /* tasks finished in the current call */
    int64_t ntasks;
    uint32_t limit;   /* workers allowed to join */
    eb_task_fn fn;
    void *ctx;
} P = {.lock = PTHREAD_MUTEX_INITIALIZER};

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* Claim and run tasks of generation g until none is left. */
static void run_tasks(uint32_t g) {
    for (;;) {
        uint64_t w = __atomic_load_n(&P.next, __ATOMIC_ACQUIRE);
        if ((uint32_t)(w >> 32) != g) return;
        int64_t ntasks = __atomic_load_n(&P.ntasks, __ATOMIC_RELAXED);
        eb_task_fn fn = __atomic_load_n(&P.fn, __ATOMIC_RELAXED);
        void *ctx = __atomic_load_n(&P.ctx, __ATOMIC_RELAXED);
        if ((int64_t)(uint32_t)w >= ntasks) return;
        /* fn, ctx and ntasks belong to generation g if this claim succeeds */
        if (!__atomic_compare_exchange_n(&P.next, &w, w + 1, 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE))
            continue;
        fn(ctx, (int64_t)(uint32_t)w);
        __atomic_fetch_add(&P.done, 1, __ATOMIC_RELEASE);
    }
}

static int join(uint32_t g) {
    uint64_t j = __atomic_load_n(&P.joined, __ATOMIC_ACQUIRE);
    for (;;) {
        if ((uint32_t)(j >> 32) != g || (uint32_t)j >= __atomic_load_n(&P.limit, __ATOMIC_RELAXED))
            return 0;
        if (__atomic_compare_exchange_n(&P.joined, &j, j + 1, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            return 1;
    }
}

static void *worker(void *arg) {
    uint32_t seen = (uint32_t)(uintptr_t)arg;
    for (;;) {
        double start = now_ns();
        uint32_t g;
        int spins = 0;
        while ((g = __atomic_load_n(&P.gen, __ATOMIC_SEQ_CST)) == seen) {
            _mm_pause();
            if (++spins % 64) continue;
            double idle = now_ns() - start;
            if (idle > YIELD_NS) sched_yield(); /* let other runnable threads have this core */
            if (idle < SPIN_NS) continue;
            __atomic_fetch_add(&P.sleepers, 1, __ATOMIC_SEQ_CST);
            if (__atomic_load_n(&P.gen, __ATOMIC_SEQ_CST) == seen)
                syscall(SYS_futex, &P.gen, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
            __atomic_fetch_sub(&P.sleepers, 1, __ATOMIC_SEQ_CST);
            start = now_ns();
        }
        seen = g;
        if (join(g)) run_tasks(g);
    }
    return NULL;
}

static void reset_after_fork(void) {
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    P.lock = fresh;
    P.nworkers = 0; /* the child has no workers; new ones are started on demand */
}

static void spawn(int want) {
    static int atfork = 0;
    if (!atfork) {
        atfork = 1;
        pthread_atfork(NULL, NULL, reset_after_fork);
    }
    if (want > MAX_WORKERS) want = MAX_WORKERS;
    while (P.nworkers < want) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        uint32_t g = __atomic_load_n(&P.gen, __ATOMIC_SEQ_CST);
        int rc = pthread_create(&t, &attr, worker, (void *)(uintptr_t)g);
        pthread_attr_destroy(&attr);
        if (rc != 0) break; /* fewer workers: the caller does more of the work */
        P.nworkers++;
    }
}

void eb_parallel(int nthreads, int64_t ntasks, eb_task_fn fn, void *ctx) {
    if (nthreads <= 1 || ntasks <= 1 || ntasks > INT32_MAX || pthread_mutex_trylock(&P.lock)) {
        for (int64_t i = 0; i < ntasks; i++) fn(ctx, i);
        return;
    }
    spawn(nthreads - 1);
    uint32_t g = P.gen + 1;
    __atomic_store_n(&P.fn, fn, __ATOMIC_RELAXED);
    __atomic_store_n(&P.ctx, ctx, __ATOMIC_RELAXED);
    __atomic_store_n(&P.ntasks, ntasks, __ATOMIC_RELAXED);
    __atomic_store_n(&P.limit, (uint32_t)(nthreads - 1), __ATOMIC_RELAXED);
    __atomic_store_n(&P.done, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&P.joined, (uint64_t)g << 32, __ATOMIC_RELEASE);
    __atomic_store_n(&P.next, (uint64_t)g << 32, __ATOMIC_RELEASE);
    __atomic_store_n(&P.gen, g, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&P.sleepers, __ATOMIC_SEQ_CST))
        syscall(SYS_futex, &P.gen, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    run_tasks(g);
    /* only tasks claimed by workers can be outstanding here */
    for (int spins = 0; __atomic_load_n(&P.done, __ATOMIC_ACQUIRE) < ntasks; spins++) {
        _mm_pause();
        if (spins > 4096) sched_yield();
    }
    pthread_mutex_unlock(&P.lock);
}
