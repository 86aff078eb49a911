/* Reading a run's JSON records: one JSON file (config.json) and JSON-lines files
 * (metrics.jsonl, steps.jsonl) line by line. For experiment and report; never writes. */
#ifndef PT_TOOLS_JSONL_H
#define PT_TOOLS_JSONL_H

#include "core/json.h"

/* The parsed file (pt_json_free it), or NULL with err naming the file. At most 16 MiB. */
pt_json *cli_read_json_file(const char *path, pt_error *err);

/* Calls fn on every JSON line of a .jsonl file; a line that does not parse ends the file
 * (a crash can leave a partial last line; the trainer trims it on resume). Returns the
 * lines read, or -1 when the file cannot be read. */
int cli_for_each_jsonl(const char *path, void (*fn)(void *, const pt_json *), void *user);

/* obj[key] as a number, NaN when it is missing or not a number. */
double cli_json_number(const pt_json *obj, const char *key);

#endif
