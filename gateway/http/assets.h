/* Page assets compiled into the binary (generated from gateway/http/www/ by
 * cmake/embed.cmake), so the dashboard works from any install without a web root. */
#ifndef CITYGATE_HTTP_ASSETS_H
#define CITYGATE_HTTP_ASSETS_H

#include <stddef.h>

typedef struct gw_embedded_file {
    const char *name;
    const unsigned char *data;
    size_t size;
} gw_embedded_file;

/* Terminated by an entry with name NULL. */
extern const gw_embedded_file gw_embedded_files[];

#endif
