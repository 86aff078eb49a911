/* Running gnuplot (Debian package gnuplot-nox) on a script that polytrain wrote, for the PNG
 * plots of experiment and report. Finds it on PATH; never installs or configures anything. */
#ifndef PT_TOOLS_GNUPLOT_H
#define PT_TOOLS_GNUPLOT_H

#include "polytrain/status.h"

/* The hint every command prints when gnuplot is missing. */
#define CLI_GNUPLOT_PACKAGE "gnuplot-nox"

/* 1 when an executable gnuplot is on PATH (/usr/bin:/bin without PATH). */
int cli_gnuplot_available(void);

/* Runs `gnuplot SCRIPT` with DIR as its working directory, so that the script names its
 * data files and outputs relative to DIR. A failure to start it or a non-zero exit status
 * is PT_ERR_IO naming the script; an interrupt (cli_interrupted) while it runs stops it
 * (SIGTERM) and is PT_ERR_INTERRUPTED. */
pt_status cli_gnuplot_run(const char *dir, const char *script, pt_error *err);

#endif
