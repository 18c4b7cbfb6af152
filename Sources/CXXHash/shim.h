// xxHash (Debian's libxxhash-dev) compiled inline into the caller: XXH3 needs no library
// at run time. XXH_INLINE_ALL renames the functions with macros Swift does not import, so
// the one function the store uses is wrapped here.
#define XXH_INLINE_ALL
#include <xxhash.h>

static inline unsigned long long outpost_xxh3_64(const void *bytes, size_t count) {
    return XXH3_64bits(bytes, count);
}
