/* The library's own version (polytrain/version.h), for programs that check at run time
 * which libpolytrain they were loaded with. */
#include "polytrain/version.h"

const char *pt_version(void)
{
    return PT_VERSION;
}
