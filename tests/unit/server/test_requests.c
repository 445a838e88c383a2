/* test_requests.c - the request workers' shares (server/requests.h): one
 * owner's tasks run on every worker but one and hold at most half the
 * queue, so another owner's task runs while theirs are stuck; tasks run
 * oldest first within the shares; stopping runs every queued task. */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "error.h"
#include "requests.h"

/* A task that holds its worker until its gate opens. */
typedef struct {
  pthread_mutex_t *lock;
  pthread_cond_t *cond;
  int *gate_open;
  int started, done;
  int order; /* when it started, among all tasks */
} gated_t;

static int started_count;

static void gated_work(void *arg) {
  gated_t *t = arg;
  pthread_mutex_lock(t->lock);
  t->started = 1;
  t->order = ++started_count;
  pthread_cond_broadcast(t->cond);
  while (!*t->gate_open)
    pthread_cond_wait(t->cond, t->lock);
  t->done = 1;
  pthread_mutex_unlock(t->lock);
}

/* Waits up to 5 s for task t to start; 1 when it did. */
static int wait_started(gated_t *t) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 5;
  pthread_mutex_lock(t->lock);
  while (!t->started)
    if (pthread_cond_timedwait(t->cond, t->lock, &until) != 0)
      break;
  const int started = t->started;
  pthread_mutex_unlock(t->lock);
  return started;
}

static int is_started(gated_t *t) {
  pthread_mutex_lock(t->lock);
  const int started = t->started;
  pthread_mutex_unlock(t->lock);
  return started;
}

int main(void) {
  pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
  int gate_open = 0;
  char err[HYDRA_ERR_LEN];
  /* two workers, a queue of 8: one owner runs on 1 worker, holds 4 tasks */
  requests_t *r = requests_start(2, 8, err);
  CHECK(r != NULL, "requests_start: %s", err);
  if (!r)
    return check_exit("test_requests");
  CHECK(requests_running_share(r) == 1 && requests_owner_share(r) == 4,
        "shares: running %d (want 1), held %d (want 4)", requests_running_share(r),
        requests_owner_share(r));
  gated_t alice[5], bob[2];
  for (int i = 0; i < 5; i++)
    alice[i] = (gated_t){&lock, &cond, &gate_open, 0, 0, 0};
  for (int i = 0; i < 2; i++)
    bob[i] = (gated_t){&lock, &cond, &gate_open, 0, 0, 0};
  for (int i = 0; i < 4; i++)
    CHECK(requests_submit(r, "alice", gated_work, NULL, &alice[i]) == 0, "alice's task %d refused",
          i);
  CHECK(requests_submit(r, "alice", gated_work, NULL, &alice[4]) == REQUESTS_OWNER_FULL,
        "alice's 5th task (over half the queue) not refused as over her share");
  CHECK(wait_started(&alice[0]), "alice's first task never started");
  /* her second must wait although a worker is free: that worker is the others' */
  struct timespec pause = {0, 200 * 1000 * 1000};
  nanosleep(&pause, NULL);
  CHECK(!is_started(&alice[1]), "alice's second task runs on the second worker too");
  CHECK(requests_submit(r, "bob", gated_work, NULL, &bob[0]) == 0, "bob's task refused");
  CHECK(wait_started(&bob[0]), "bob's task waits behind alice's (both workers hers)");
  CHECK(requests_submit(r, "bob", gated_work, NULL, &bob[1]) == 0, "bob's second task refused");
  CHECK(requests_pending(r) == 6, "pending %d, want 6 (2 running, 4 queued)", requests_pending(r));
  /* open the gate: everything runs; alice's tasks in the order given */
  pthread_mutex_lock(&lock);
  gate_open = 1;
  pthread_cond_broadcast(&cond);
  pthread_mutex_unlock(&lock);
  requests_stop(r);
  CHECK(requests_submit(r, "bob", gated_work, NULL, &bob[1]) == REQUESTS_FULL,
        "a stopped pool takes a task");
  for (int i = 0; i < 4; i++)
    CHECK(alice[i].done, "alice's task %d never ran (stop runs every queued task)", i);
  CHECK(bob[0].done && bob[1].done, "bob's tasks: %d %d done", bob[0].done, bob[1].done);
  CHECK(!alice[4].started, "a refused task ran");
  for (int i = 1; i < 4; i++)
    CHECK(alice[i].order > alice[i - 1].order, "alice's task %d ran before her task %d", i, i - 1);
  requests_free(r);
  /* no owner (a one-user server): no share, both workers at once, the queue whole */
  r = requests_start(2, 4, err);
  gate_open = 0;
  gated_t solo[4];
  for (int i = 0; i < 4; i++) {
    solo[i] = (gated_t){&lock, &cond, &gate_open, 0, 0, 0};
    CHECK(r && requests_submit(r, NULL, gated_work, NULL, &solo[i]) == 0,
          "an unowned task %d refused", i);
  }
  CHECK(wait_started(&solo[0]) && wait_started(&solo[1]),
        "two unowned tasks do not run on both workers at once");
  pthread_mutex_lock(&lock);
  gate_open = 1;
  pthread_cond_broadcast(&cond);
  pthread_mutex_unlock(&lock);
  requests_free(r);
  CHECK(solo[2].done && solo[3].done, "unowned tasks left unrun");
  /* one worker: every owner runs on it */
  r = requests_start(1, 4, err);
  CHECK(r && requests_running_share(r) == 1 && requests_owner_share(r) == 2,
        "one worker: shares %d, %d", r ? requests_running_share(r) : -1,
        r ? requests_owner_share(r) : -1);
  requests_free(r);
  CHECK(requests_start(2, 1, err) == NULL && strstr(err, "queue"), "a queue of one accepted: %s",
        err);
  return check_exit("test_requests");
}
