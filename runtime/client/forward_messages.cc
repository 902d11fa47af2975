// Building forwardRequests and decoding forwardReplies (see forward_messages.h).
#include "runtime/client/forward_messages.h"

#include <algorithm>
#include <span>
#include <stdexcept>
#include <string>

#include "runtime/wire/blob_message.h"
#include "runtime/wire/envelope_util.h"
#include "runtime/wire/cluster_auth.h"
#include "runtime/wire/tensor_pack.h"
#include "runtime/wire/wire_error.h"

namespace moe {

void build_forward_request(capnp::MallocMessageBuilder& message, uint64_t epoch, int32_t layer, wire::DType dtype,
                           const Matrix& x, const WorkerShard& shard, std::chrono::milliseconds deadline,
                           std::string_view cluster_token, bool deterministic, uint64_t weight_version) {
  auto request = message.initRoot<wire::Envelope>().initForwardRequest();
  request.setWeightVersion(weight_version);
  const size_t rows = shard.tokens.size();
  const size_t hidden = static_cast<size_t>(x.cols);
  request.setEpoch(epoch);
  request.setLayer(layer);
  request.setDtype(dtype);
  request.setNumTokens(static_cast<uint32_t>(rows));
  request.setHidden(static_cast<uint32_t>(hidden));
  const size_t row_bytes = packed_tensor_bytes(dtype, hidden);
  // A BlobMessageBuilder keeps the tokens in storage of its own (not zeroed first; sent as its own segment).
  kj::ArrayPtr<kj::byte> blob;
  if (auto* blobs = dynamic_cast<BlobMessageBuilder*>(&message)) {
    auto [orphan, bytes] = blobs->external_data(rows * row_bytes);
    request.adoptTokens(kj::mv(orphan));
    blob = bytes;
  } else {
    blob = request.initTokens(static_cast<unsigned>(rows * row_bytes));
  }
  for (size_t i = 0; i < rows; ++i) {
    std::span<const float> row(x.row(shard.tokens[i]), hidden);
    pack_tensor(row, dtype, kj::arrayPtr(blob.begin() + i * row_bytes, row_bytes));
  }
  const auto n = static_cast<unsigned>(shard.assignments.size());
  auto token_index = request.initTokenIndex(n);
  auto expert_id = request.initExpertId(n);
  auto weight = request.initWeight(n);
  for (unsigned i = 0; i < n; ++i) {
    token_index.set(i, shard.assignments[i].token);
    expert_id.set(i, shard.assignments[i].expert);
    weight.set(i, shard.assignments[i].weight);
  }
  const auto ms = std::clamp<long long>(deadline.count(), 1, UINT32_MAX);
  request.setDeadlineMs(static_cast<uint32_t>(ms));
  request.setDeterministic(deterministic);
  set_cluster_token(message, cluster_token);
}

namespace {

// The checked forwardReply of `reply`: its kind, weight version and shape (rows x hidden).
wire::ForwardReply::Reader checked_reply(const Frame& reply, size_t rows, int64_t hidden, uint64_t weight_version) {
  auto envelope = reply.envelope();
  expect_kind(envelope, wire::Envelope::FORWARD_REPLY);
  auto r = envelope.getForwardReply();
  // 0: a worker that predates weight versions, which can only serve the first one.
  const uint64_t replied = r.getWeightVersion() != 0 ? r.getWeightVersion() : 1;
  if (weight_version != 0 && replied != weight_version) {
    throw WireError("forwardReply computed with weight version " + std::to_string(r.getWeightVersion()) +
                    ", the call routed with version " + std::to_string(weight_version));
  }
  if (r.getNumTokens() != rows || r.getHidden() != static_cast<uint64_t>(hidden)) {
    throw WireError("forwardReply has " + std::to_string(r.getNumTokens()) + " x " + std::to_string(r.getHidden()) +
                    ", the request sent " + std::to_string(rows) + " x " + std::to_string(hidden));
  }
  return r;
}

}  // namespace

void decode_forward_reply_into(const Frame& reply, size_t rows, int64_t hidden, std::span<float> out,
                               uint64_t weight_version) {
  auto r = checked_reply(reply, rows, hidden, weight_version);
  if (out.size() != rows * static_cast<size_t>(hidden)) {
    throw std::invalid_argument("decode_forward_reply_into: buffer of " + std::to_string(out.size()) +
                                " values for " + std::to_string(rows) + " x " + std::to_string(hidden));
  }
  unpack_tensor(r.getOutput(), r.getDtype(), out, "forwardReply.output");
}

void add_forward_reply(const Frame& reply, std::span<const int32_t> tokens, Matrix& out, uint64_t weight_version) {
  auto r = checked_reply(reply, tokens.size(), out.cols, weight_version);
  if (out.rows < 0 || out.cols < 0 || out.data.size() != static_cast<size_t>(out.rows * out.cols)) {
    throw std::invalid_argument("add_forward_reply: output matrix [" + std::to_string(out.rows) + ", " +
                                std::to_string(out.cols) + "] holds " + std::to_string(out.data.size()) + " values");
  }
  unpack_tensor_add_rows(r.getOutput(), r.getDtype(), tokens, static_cast<size_t>(out.cols), std::span<float>(out.data),
                         "forwardReply.output");
}

std::vector<float> decode_forward_reply(const Frame& reply, size_t rows, int64_t hidden) {
  std::vector<float> out(rows * static_cast<size_t>(hidden));
  decode_forward_reply_into(reply, rows, hidden, std::span<float>(out));
  return out;
}

size_t shard_payload_bytes(const WorkerShard& shard, int64_t hidden, wire::DType dtype) {
  return 2 * packed_tensor_bytes(dtype, shard.tokens.size() * static_cast<size_t>(hidden));
}

}  // namespace moe
