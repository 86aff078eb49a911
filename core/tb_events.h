/* TensorBoard event files written in plain C: scalar summaries as tensorflow.Event
 * protocol buffers (hand-encoded) in TFRecord framing, the format `tensorboard --logdir`
 * reads. Only writes its own events.out.tfevents.* files; reads old ones only to learn
 * which (tag, step) values a resumed run has already logged. */
#ifndef PT_TB_EVENTS_H
#define PT_TB_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "polytrain/status.h"

typedef struct pt_tb_writer pt_tb_writer;

/* Creates dir if missing and a new event file in it, named as TensorBoard's own writer
 * names them (events.out.tfevents.<unix seconds>.<host>.<pid>.<n>), whose first record is
 * the file_version event "brain.Event:2". resume == 0: the folder's old event files are
 * removed first (a new run). resume == 1: they stay, and a value is written only at a step
 * after the last one its tag has in them, so that a resumed run never logs a step twice. */
pt_status pt_tb_open(const char *dir, int resume, pt_tb_writer **out, pt_error *err);

/* One Event at step with one Summary.Value {tag, simple_value}. The value is a float, as
 * TensorBoard's simple_value is. Buffered: pt_tb_flush makes it visible to readers. */
pt_status pt_tb_scalar(pt_tb_writer *w, const char *tag, int64_t step, double value, pt_error *err);
pt_status pt_tb_flush(pt_tb_writer *w, pt_error *err);
void pt_tb_close(pt_tb_writer *w);
const char *pt_tb_path(const pt_tb_writer *w);

/* TFRecord's checksum: CRC-32C (Castagnoli), rotated and offset ("masked") so that a CRC
 * stored inside checksummed data does not checksum to a fixed value. */
uint32_t pt_crc32c(const void *data, size_t n);
uint32_t pt_tb_masked_crc(const void *data, size_t n);

#endif
