// The serving half of weight streaming (--no-shared-storage): answers a peer's fetchExpert with one
// chunk of one matrix of an expert this worker holds a retained copy of (worker/expert_store.h).
#pragma once

#include <cstdint>

#include "runtime/wire/moe.capnp.h"
#include "worker/expert_store.h"

namespace moe {

// The most bytes one expertChunk carries, whatever the request's maxBytes (well under the frame limit).
inline constexpr uint32_t kMaxExpertChunkBytes = 16u << 20;

// Fills `chunk` for `request`. Throws ServiceError: unknownLayer / badRequest for an expert outside the
// model (ExpertStore::check_expert), expertNotHosted when this worker holds no retained copy of it (not
// loaded, or running without --no-shared-storage), badRequest for an unknown matrix, maxBytes 0 or an
// offset at or past the matrix's end. The weights are those of weight `version` (expertNotHosted when this
// worker does not hold that version). `current_epoch` goes into the errors.
void fill_expert_chunk(const ExpertStore& store, wire::FetchExpert::Reader request, uint64_t version,
                       wire::ExpertChunk::Builder chunk, uint64_t current_epoch);

}  // namespace moe
