// Keeping a forward call's requests under the frame limit: a bound on the encoded size of one
// forwardRequest, and the split of a call's (token, expert) pairs into chunks of whole tokens, in token
// order, such that in every chunk each worker's request (and so its reply, which carries the same rows
// without the pair lists) stays within the limit. A call whose requests all fit stays one chunk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/core/expert_types.h"
#include "runtime/wire/moe.capnp.h"

namespace moe {

// Upper bound of the bytes of one forwardRequest frame (segment table included) with `rows` tokens of
// `hidden` values in `dtype`, `pairs` (token, expert, weight) entries and a cluster token of
// `token_bytes` characters.
size_t forward_request_bound(size_t rows, size_t pairs, int64_t hidden, wire::DType dtype, size_t token_bytes);

// Chunks of `items` (indices into `assignments`; item i goes to worker `worker_of_item[i]`), as lists of
// positions into `items` in ascending position order. Tokens never straddle chunks. Throws
// std::length_error naming the sizes when one token's request alone would exceed `max_request_bytes`.
// row_per_pair (deterministic requests, whose replies carry a row per pair): each request is bounded as
// if it carried max(tokens, pairs) rows, so the reply fits too.
std::vector<std::vector<size_t>> split_by_frame_limit(std::span<const TokenAssignment> assignments,
                                                      std::span<const size_t> items,
                                                      std::span<const int32_t> worker_of_item, int64_t hidden,
                                                      wire::DType dtype, size_t max_request_bytes,
                                                      size_t token_bytes, bool row_per_pair = false);

}  // namespace moe
