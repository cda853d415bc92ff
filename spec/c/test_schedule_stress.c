/* The single-flight scheduler under contention: THREADS trigger threads each fire PER_THREAD
 * triggers while an executor thread (standing in for the service thread) runs the one attempt of
 * each cycle and then completes it. Asserts: never a second attempt scheduled while one is
 * pending (exactly one per cycle), at least MIN_CYCLES cycles, and every trigger accounted for
 * (attempts + coalesced == triggers, summed from the per-cycle counts complete() returns).
 * Runs in the TSan build too (`make tsan`). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#include "ctest.h"
#include "schedule.h"

#define THREADS 32
#define PER_THREAD 100000
#define BLOCK 100
#define MIN_CYCLES (PER_THREAD / BLOCK)

static gn_sched_t sched;
static _Atomic uint64_t scheduled;  /* attempts handed to the executor by winners */
static _Atomic int start_flag;
static _Atomic int threads_done;
static _Atomic uint64_t wins;

/* Written by the executor only; read after join. */
static uint64_t executed, coalesced_sum, double_booked, successes;

static void *trigger_thread(void *arg) {
  (void)arg;
  while (!atomic_load(&start_flag)) sched_yield();
  for (int i = 0; i < PER_THREAD; i++) {
    /* Failures come in waves: block b (of BLOCK triggers) starts only after b cycles have
     * completed, so the run spans at least PER_THREAD / BLOCK cycles however the threads are
     * scheduled, while within a wave all threads still race on the same open cycle. */
    if (i % BLOCK == 0)
      while (atomic_load(&sched.completed) < (uint64_t)(i / BLOCK)) sched_yield();
    if (gn_sched_trigger(&sched, (gn_reason_t)(i % GN_REASON_COUNT_))) {
      atomic_fetch_add(&wins, 1);
      atomic_fetch_add(&scheduled, 1); /* "schedule the attempt" on the service thread */
    }
    if ((i & 15) == 0) sched_yield();
  }
  atomic_fetch_add(&threads_done, 1);
  return NULL;
}

static void *executor_thread(void *arg) {
  (void)arg;
  for (;;) {
    uint64_t s = atomic_load(&scheduled);
    if (s > executed) {
      /* More than one pending attempt would mean two winners in one cycle. */
      if (s - executed > 1) double_booked++;
      /* The attempt itself: long enough that other threads' triggers pile up and coalesce. */
      for (volatile int spin = 0; spin < 2000; spin++) {}
      executed++;
      int ok = (executed % 3) != 0;
      successes += (uint64_t)ok;
      coalesced_sum += gn_sched_complete(&sched, ok);
    } else if (atomic_load(&threads_done) == THREADS && atomic_load(&scheduled) == executed) {
      break;
    } else {
      sched_yield();
    }
  }
  return NULL;
}

static void test_one_attempt_per_cycle_every_trigger_counted(void) {
  gn_sched_init(&sched);
  pthread_t th[THREADS], ex;
  for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, trigger_thread, NULL);
  pthread_create(&ex, NULL, executor_thread, NULL);
  atomic_store(&start_flag, 1);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  pthread_join(ex, NULL);

  uint64_t total = (uint64_t)THREADS * PER_THREAD;
  uint64_t by_reason = 0;
  for (int r = 0; r < GN_REASON_COUNT_; r++) by_reason += atomic_load(&sched.by_reason[r]);
  printf("  triggers %llu, cycles %llu, coalesced %llu, executed %llu\n",
         (unsigned long long)atomic_load(&sched.triggers),
         (unsigned long long)atomic_load(&sched.cycles),
         (unsigned long long)coalesced_sum, (unsigned long long)executed);
  CHECK(double_booked == 0, "%llu cycles had a second attempt scheduled",
        (unsigned long long)double_booked);
  CHECK(atomic_load(&sched.triggers) == total, "triggers %llu != %llu",
        (unsigned long long)atomic_load(&sched.triggers), (unsigned long long)total);
  CHECK(by_reason == total, "by-reason sum %llu != %llu", (unsigned long long)by_reason,
        (unsigned long long)total);
  CHECK(atomic_load(&wins) == executed, "wins %llu != executed %llu",
        (unsigned long long)atomic_load(&wins), (unsigned long long)executed);
  CHECK(atomic_load(&sched.cycles) == executed, "cycles %llu != executed %llu",
        (unsigned long long)atomic_load(&sched.cycles), (unsigned long long)executed);
  CHECK(atomic_load(&sched.completed) == executed, "completed %llu != executed %llu",
        (unsigned long long)atomic_load(&sched.completed), (unsigned long long)executed);
  CHECK(executed + coalesced_sum == total, "attempts %llu + coalesced %llu != triggers %llu",
        (unsigned long long)executed, (unsigned long long)coalesced_sum,
        (unsigned long long)total);
  CHECK(atomic_load(&sched.coalesced) == coalesced_sum, "coalesced counter %llu != sum %llu",
        (unsigned long long)atomic_load(&sched.coalesced), (unsigned long long)coalesced_sum);
  CHECK(atomic_load(&sched.successes) == successes, "successes mismatch");
  CHECK(executed >= MIN_CYCLES, "only %llu cycles (need >= %d)", (unsigned long long)executed,
        MIN_CYCLES);
  CHECK(!gn_sched_open(&sched), "a cycle was left open");
}

/* Sequential semantics: the first trigger wins, the rest coalesce, complete() reports them and
 * reopens; completing with no open cycle is a no-op. */
static void test_sequential_semantics(void) {
  gn_sched_t s;
  gn_sched_init(&s);
  CHECK(gn_sched_complete(&s, 1) == 0, "complete with no cycle");
  CHECK(atomic_load(&s.completed) == 0, "a no-op complete was counted");
  CHECK(gn_sched_trigger(&s, GN_REASON_CLOSE) == 1, "first trigger must win");
  CHECK(gn_sched_open(&s), "cycle should be open");
  CHECK(atomic_load(&s.first_reason) == GN_REASON_CLOSE, "first reason");
  CHECK(gn_sched_trigger(&s, GN_REASON_ERROR) == 0, "second trigger must coalesce");
  CHECK(gn_sched_trigger(&s, GN_REASON_MANUAL) == 0, "third trigger must coalesce");
  CHECK(gn_sched_complete(&s, 0) == 2, "two coalesced");
  CHECK(!gn_sched_open(&s), "closed");
  CHECK(gn_sched_trigger(&s, GN_REASON_TIMEOUT) == 1, "next cycle wins again");
  CHECK(atomic_load(&s.first_reason) == GN_REASON_TIMEOUT, "new first reason");
  CHECK(gn_sched_complete(&s, 1) == 0, "none coalesced");
  CHECK(atomic_load(&s.cycles) == 2 && atomic_load(&s.successes) == 1, "counters");
  CHECK(gn_sched_trigger(&s, (gn_reason_t)99) == 1, "bad reason still triggers");
  CHECK(atomic_load(&s.by_reason[GN_REASON_ERROR]) == 2, "bad reason counted as error");
}

int main(void) {
  RUN(test_sequential_semantics);
  RUN(test_one_attempt_per_cycle_every_trigger_counted);
  CT_END();
}
