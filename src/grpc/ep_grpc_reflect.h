#ifndef EP_GRPC_REFLECT_H
#define EP_GRPC_REFLECT_H

#include <stddef.h>
#include <stdint.h>

#include "base/ep_buf.h"

/*
 * Server reflection (grpc.reflection.v1alpha / v1 ServerReflectionInfo):
 * the answer to one ServerReflectionRequest (msg, len) from a
 * FileDescriptorSet (set, set_len; protoc --include_imports): the file that
 * defines a symbol or has a name, with the files it imports; the list of
 * services (the ones given); an ErrorResponse otherwise. Appends the
 * ServerReflectionResponse to out. Bounded by its inputs; thread-safe.
 */
void ep_grpc_reflect_answer(const uint8_t *set, size_t set_len, const uint8_t *msg, size_t len,
                            const char *const *services, int nservices, ep_buf_t *out);

#endif /* EP_GRPC_REFLECT_H */
