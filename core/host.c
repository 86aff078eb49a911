/* The host's CPU model name (host.h). */
#include <stdio.h>
#include <string.h>

#include "core/host.h"

int pt_host_cpu_model(char *out, size_t cap)
{
    if (cap == 0) return 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return 0;
    char line[512];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        const char *v = strchr(line, ':');
        if (!v) break;
        v++;
        while (*v == ' ' || *v == '\t') v++;
        snprintf(out, cap, "%.*s", (int)strcspn(v, "\n"), v);
        found = 1;
    }
    fclose(f);
    return found;
}
