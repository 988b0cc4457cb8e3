// libpq for the PostgreSQL catalog of shared stores. Its API is plain C functions, so the shim only includes it.
#include <libpq-fe.h>
