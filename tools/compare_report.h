/* polytrain compare's output: from a report.json tree (one machine's run, or several merged)
 * it writes report.json, report.md and the PNG charts (gnuplot) into a directory. The tree
 * is the only input, so a merged report is drawn exactly as a fresh one. */
#ifndef PT_TOOLS_COMPARE_REPORT_H
#define PT_TOOLS_COMPARE_REPORT_H

#include "core/json.h"

/* The value of report.json's "format" member. */
#define CLI_COMPARE_FORMAT "polytrain compare report"

/* Writes DIR/report.json (the tree as it is), DIR/report.md and, when plots is set,
 * DIR/{throughput,op_time,gflops,setup}.png with their gnuplot script and data in
 * DIR/gnuplot/. *plotted: 1 when the PNGs were drawn; when the charts fail, plot_error says
 * why and the rest is still written (report.md then embeds no charts). A failure to write
 * report.json or report.md is the error returned. */
pt_status cli_compare_write(const pt_json *report, const char *dir, int plots, int *plotted, char *plot_error,
                            size_t cap, pt_error *err);

#endif
