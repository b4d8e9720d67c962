/*  cvr_json.h: msgpack (as the protocol carries it) to JSON, via jansson
    (internal; used by conveyorctl).

    The mapping is lossless where JSON allows it and readable where it does
    not:
      nil, bool, str, array, float    as themselves
      int                             JSON integer; a positive one above
                                      INT64_MAX (which jansson cannot hold)
                                      as its decimal string
      NaN and infinities              null (JSON has no such numbers)
      map                             object; a key that is not a string is
                                      stringified (42 -> "42", true -> "true",
                                      bin -> base64, array/map -> compact JSON)
      bin                             base64 string (RFC 4648, padded)
      ext                             null
    A string that is not valid UTF-8 gets U+FFFD for each bad byte, since
    jansson refuses such strings outright.
*/
#ifndef CVR_JSON_H_INCLUDED
#define CVR_JSON_H_INCLUDED

#include <stdbool.h>
#include <stdio.h>
#include <jansson.h>
#include <msgpack.h>
#include "conveyor/cvr_types.h"

//  Nesting deeper than this converts to null, so a hostile tree cannot
//  exhaust the stack (the protocol's own decoder stops at 32).
#define CVR_JSON_MAX_DEPTH 64

//  Converts a msgpack object to a new JSON value (caller owns; json_decref).
//  Returns NULL only when memory runs out.
json_t *
    cvr_json_from_msgpack (const msgpack_object *o);

//  Converts a reply map to a JSON object without its envelope keys (`ok`,
//  `rid`): what a user asked about, not how it travelled. Returns NULL if
//  reply is not a map or memory runs out.
json_t *
    cvr_json_from_reply (const msgpack_object *reply);

//  Converts a service record (as protocol section 3 shows it).
json_t *
    cvr_json_from_service (const cvr_service_t *service);

//  Converts a string of msgpack bytes; NULL if they are not exactly one
//  well-formed object.
json_t *
    cvr_json_from_bytes (const void *data, size_t size);

//  Writes value to file followed by a newline: indented by 2 for a single
//  result, or compact on one line (for streams such as watch). Object keys
//  keep the server's order. Returns 0 or -1.
int
    cvr_json_print (const json_t *value, FILE *file, bool compact);

//  Base64 (RFC 4648, padded) of size bytes; caller frees. NULL on no memory.
char *
    cvr_json_base64 (const void *data, size_t size);

#endif
