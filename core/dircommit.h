/* Crash-safe replacement of a directory of files (a checkpoint, a report) as one unit, and
 * the read-only lookup readers use while such a replacement may be under way or was cut
 * short. Only the writer of a directory (holding its run lock, see runlock.h) ever repairs
 * anything; readers never write.
 *
 * For final directory P/B the commit uses three sibling names that a user would not choose,
 * each recognised as ours only when it also holds the caller's marker file (e.g.
 * "model.safetensors"):
 *   P/.B.polytrain-new      being written (may be partial; never read)
 *   P/.B.polytrain-pending  complete, waiting to be installed by a later step of a larger
 *                           commit (see pt_dir_stage)
 *   P/.B.polytrain-old      the previous complete directory, between the two renames of a
 *                           commit on a file system without an atomic exchange, or garbage
 *                           after an exchange */
#ifndef PT_DIRCOMMIT_H
#define PT_DIRCOMMIT_H

#include <stddef.h>

#include "polytrain/status.h"

typedef enum { PT_DIR_NEW, PT_DIR_PENDING, PT_DIR_OLD } pt_dir_slot;

/* The sibling name of final_dir for a slot into buf (PT_ERR_INVALID when it does not fit). */
pt_status pt_dir_slot_path(const char *final_dir, pt_dir_slot slot, char *buf, size_t n, pt_error *err);

/* Replaces final_dir by the complete directory `from` (a sibling: its NEW or PENDING slot).
 * from's files are fsync'd by their writer; from itself and the parent are fsync'd here. On
 * Linux the two directories are swapped in one atomic step (renameat2 RENAME_EXCHANGE), so
 * final_dir never disappears and a reader with files open is not disturbed; where the file
 * system cannot (NFS, ...) final_dir moves to its OLD slot first and `from` takes its place.
 * Either way the old content ends in the OLD slot and is removed (as is anything found in
 * the OLD slot beforehand: the writer's own name, in the way of this commit). A failure leaves final_dir
 * as it was (or, after a crash, recoverable by pt_dir_recover). */
pt_status pt_dir_commit(const char *from, const char *final_dir, pt_error *err);

/* Moves the complete NEW slot to the PENDING slot (replacing a previous one): its content
 * survives a crash and a later pt_dir_commit(PENDING, final) installs it. */
pt_status pt_dir_stage(const char *final_dir, pt_error *err);

/* Writer only: settles what an interrupted commit of final_dir left. A partial NEW slot is
 * removed; if final_dir is missing, its OLD slot (when it holds marker) is renamed back;
 * otherwise the OLD slot is garbage of a commit that succeeded and is removed, as
 * pt_dir_commit does (its removal may have been cut short after the marker went). PENDING
 * is left for the caller to install or discard. */
pt_status pt_dir_recover(const char *final_dir, const char *marker, pt_error *err);

/* Readers: the directory to read for final_dir, without changing anything: final_dir when it
 * exists, else its OLD slot when that holds marker (a commit between its two renames: the
 * previous complete state), else final_dir (so that opening it reports it missing). Returns
 * 1 when the OLD slot was chosen. */
int pt_dir_resolve(const char *final_dir, const char *marker, char *buf, size_t n);

#endif
