// The data-path messages of a client: a ForwardRequest for one worker shard (its distinct tokens, packed
// in the wire dtype, and its (token row, expert, weight) lists), and the checked decoding of the reply.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <capnp/message.h>

#include "runtime/model/tensor.h"
#include "runtime/routing/dispatch_plan.h"
#include "runtime/wire/framing.h"

namespace moe {

// Fills `message` with a forwardRequest for `shard` (rows of `x` named by shard.tokens), carrying
// `cluster_token` when it is not empty. deterministic: ask for one reply row per assignment (the rows are
// then decoded with rows = shard.assignments.size()). Asks for weight version `weight_version` (0: the
// worker's own).
void build_forward_request(capnp::MallocMessageBuilder& message, uint64_t epoch, int32_t layer, wire::DType dtype,
                           const Matrix& x, const WorkerShard& shard, std::chrono::milliseconds deadline,
                           std::string_view cluster_token = {}, bool deterministic = false,
                           uint64_t weight_version = 0);

// The per-token partial sums of a forwardReply as f32 [rows x hidden]. Throws RemoteError on an error
// reply and WireError when the reply is of another kind or its sizes differ from (rows, hidden).
std::vector<float> decode_forward_reply(const Frame& reply, size_t rows, int64_t hidden);
// The same into `out`, which must hold rows x hidden values (lets a caller reuse one buffer across calls).
// With `weight_version` (not 0), a reply computed with another version throws WireError: a call never
// adds up experts of two versions (a reply naming version 0 comes from a worker that predates versions:
// it counts as version 1).
void decode_forward_reply_into(const Frame& reply, size_t rows, int64_t hidden, std::span<float> out,
                               uint64_t weight_version = 0);

// The default mode's combine straight from the reply's bytes (no unpacked copy): out[tokens[i], :] +=
// reply row i, converted from the reply's dtype as it is added. Same checks and errors as
// decode_forward_reply_into (rows = tokens.size(), hidden = out.cols); throws std::invalid_argument when
// a token is out of range of `out` (before anything is added).
void add_forward_reply(const Frame& reply, std::span<const int32_t> tokens, Matrix& out, uint64_t weight_version = 0);

// Bytes of the token and output blobs one shard moves (request + reply), for throughput figures.
size_t shard_payload_bytes(const WorkerShard& shard, int64_t hidden, wire::DType dtype);

}  // namespace moe
