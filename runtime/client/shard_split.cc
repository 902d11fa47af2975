// forward_request_bound / split_by_frame_limit (see shard_split.h).
#include "runtime/client/shard_split.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <stdexcept>
#include <string>

#include "runtime/wire/tensor_pack.h"

namespace moe {

namespace {

size_t round_up8(size_t bytes) { return (bytes + 7) / 8 * 8; }

// Envelope + ForwardRequest structs, the segment table and far pointers of a message of a few segments,
// and the word padding of each list: generous, so that the bound holds for any cluster token length.
constexpr size_t kFixedBytes = 1024;

}  // namespace

size_t forward_request_bound(size_t rows, size_t pairs, int64_t hidden, wire::DType dtype, size_t token_bytes) {
  const size_t row_bytes = packed_tensor_bytes(dtype, static_cast<size_t>(hidden));
  return kFixedBytes + round_up8(token_bytes + 1) + round_up8(rows * row_bytes) + 3 * round_up8(4 * pairs);
}

std::vector<std::vector<size_t>> split_by_frame_limit(std::span<const TokenAssignment> assignments,
                                                      std::span<const size_t> items,
                                                      std::span<const int32_t> worker_of_item, int64_t hidden,
                                                      wire::DType dtype, size_t max_request_bytes,
                                                      size_t token_bytes, bool row_per_pair) {
  if (worker_of_item.size() != items.size()) {
    throw std::invalid_argument("split_by_frame_limit: " + std::to_string(items.size()) + " items but " +
                                std::to_string(worker_of_item.size()) + " workers");
  }
  // Rows and pairs per worker of the whole call: when every request fits, nothing is split.
  struct Load {
    size_t rows = 0, pairs = 0;
    int32_t last_token = -1;
  };
  std::vector<size_t> by_token(items.size());
  std::iota(by_token.begin(), by_token.end(), size_t{0});
  std::stable_sort(by_token.begin(), by_token.end(),
                   [&](size_t a, size_t b) { return assignments[items[a]].token < assignments[items[b]].token; });
  auto fits = [&](const Load& l) {
    const size_t rows = row_per_pair ? std::max(l.rows, l.pairs) : l.rows;
    return forward_request_bound(rows, l.pairs, hidden, dtype, token_bytes) <= max_request_bytes;
  };
  {
    std::map<int32_t, Load> whole;
    for (size_t p : by_token) {
      Load& l = whole[worker_of_item[p]];
      const int32_t token = assignments[items[p]].token;
      if (l.last_token != token) ++l.rows, l.last_token = token;
      ++l.pairs;
    }
    if (std::all_of(whole.begin(), whole.end(), [&](const auto& w) { return fits(w.second); })) {
      std::vector<size_t> all(items.size());
      std::iota(all.begin(), all.end(), size_t{0});
      return {std::move(all)};
    }
  }

  std::vector<std::vector<size_t>> chunks;
  std::vector<size_t> chunk;
  std::map<int32_t, Load> load;  // of the chunk being filled
  for (size_t begin = 0; begin < by_token.size();) {
    const int32_t token = assignments[items[by_token[begin]]].token;
    size_t end = begin;
    while (end < by_token.size() && assignments[items[by_token[end]]].token == token) ++end;
    // This token's rows and pairs per worker, added to the chunk's.
    std::map<int32_t, Load> with = load;
    for (size_t i = begin; i < end; ++i) {
      Load& l = with[worker_of_item[by_token[i]]];
      if (l.last_token != token) ++l.rows, l.last_token = token;
      ++l.pairs;
    }
    const bool over = !std::all_of(with.begin(), with.end(), [&](const auto& w) { return fits(w.second); });
    if (over && chunk.empty()) {
      size_t pairs = end - begin;
      throw std::length_error("one token (index " + std::to_string(token) + ", hidden " + std::to_string(hidden) +
                              ", " + std::to_string(pairs) + " pairs) needs a request of up to " +
                              std::to_string(forward_request_bound(1, pairs, hidden, dtype, token_bytes)) +
                              " bytes, over the frame limit of " + std::to_string(max_request_bytes) + " bytes");
    }
    if (over) {  // close the chunk; this token starts the next one
      std::sort(chunk.begin(), chunk.end());
      chunks.push_back(std::move(chunk));
      chunk.clear();
      load.clear();
      continue;
    }
    load = std::move(with);
    for (size_t i = begin; i < end; ++i) chunk.push_back(by_token[i]);
    begin = end;
  }
  if (!chunk.empty()) {
    std::sort(chunk.begin(), chunk.end());
    chunks.push_back(std::move(chunk));
  }
  return chunks;
}

}  // namespace moe
