// The file contract of `moectl forward`: read `hidden_states` [T, hidden] (F32, BF16 or F16) from a
// safetensors file; write `hidden_states` [T, hidden] F32 and, optionally, `topk_ids` I32 [T, K] and
// `topk_weights` F32 [T, K].
#pragma once

#include <filesystem>

#include "runtime/model/tensor.h"
#include "runtime/routing/router.h"

namespace moe::cli {

// Throws ModelError naming the file: tensor missing, not 2-D, hidden size != expect_hidden, bad dtype.
Matrix read_hidden_states(const std::filesystem::path& path, int64_t expect_hidden);
void write_hidden_states(const std::filesystem::path& path, const Matrix& out);
void write_routing(const std::filesystem::path& path, const RoutingResult& routing);

}  // namespace moe::cli
