/* The lock of a run directory: one writer at a time. A training holds it from before it
 * touches the directory until it ends; the kernel releases it when the process dies, so a
 * crash never leaves a stale lock. The lock file (RUN/.polytrain.lock) names the holder's
 * pid, host and start time so that a refused run can say who holds it. Readers (eval,
 * report, export, ...) never take it: they only read complete states (see dircommit.h). */
#ifndef PT_RUNLOCK_H
#define PT_RUNLOCK_H

#include "polytrain/status.h"

#define PT_RUN_LOCK_FILE ".polytrain.lock"

typedef struct pt_run_lock pt_run_lock;

/* Takes the lock of run directory dir (which must exist), or fails with PT_ERR_IO naming the
 * holder: "run directory 'X' is in use by pid N on host H since T (...)". `what` says what
 * this process is doing ("polytrain train"), written for the next one to read. Within one
 * process the lock nests: a second pt_run_lock_acquire of the same directory adds a reference. */
pt_status pt_run_lock_acquire(const char *dir, const char *what, pt_run_lock **out, pt_error *err);

/* Drops a reference; the last one releases the lock. NULL is a no-op. */
void pt_run_lock_release(pt_run_lock *l);

#endif
