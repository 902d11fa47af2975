// Streaming experts from a peer (see expert_fetch.h). Work is a queue of byte ranges of matrices: the
// first range of each matrix learns its dtype (and so its size), which queues the rest; a short reply
// queues what it left out.
#include "worker/expert_fetch.h"

#include "runtime/wire/cluster_auth.h"

#include <capnp/message.h>

#include <array>
#include <cstring>
#include <deque>
#include <future>
#include <stdexcept>
#include <string>

#include "runtime/wire/envelope_util.h"
#include "runtime/wire/tensor_pack.h"
#include "worker/expert_copy.h"

namespace moe {

namespace {

constexpr std::array<wire::ExpertMatrix, 3> kMatrices = {wire::ExpertMatrix::GATE, wire::ExpertMatrix::UP,
                                                         wire::ExpertMatrix::DOWN};

const char* matrix_name(wire::ExpertMatrix m) {
  switch (m) {
    case wire::ExpertMatrix::GATE: return "gate";
    case wire::ExpertMatrix::UP: return "up";
    case wire::ExpertMatrix::DOWN: return "down";
  }
  return "?";
}

struct Range {
  ExpertKey key;
  size_t matrix = 0;  // index into kMatrices
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct Pending {
  Range range;
  std::future<Frame> reply;
};

struct Target {
  OwnedMatrix matrix;
  bool sized = false;  // dtype known, bytes allocated
  uint64_t received = 0;
};

class Fetch {
 public:
  Fetch(Connection& peer, const ModelSpec& spec, const ExpertFetchOptions& options)
      : peer_(peer), spec_(spec), options_(options) {}

  std::map<ExpertKey, ExpertWeights> run(const std::vector<ExpertKey>& keys) {
    for (const ExpertKey& key : keys) {
      for (size_t m = 0; m < kMatrices.size(); ++m) {
        targets_[{key, m}] = Target{};
        todo_.push_back({key, m, 0, options_.chunk_bytes});
      }
    }
    std::deque<Pending> in_flight;
    while (!todo_.empty() || !in_flight.empty()) {
      while (!todo_.empty() && in_flight.size() < options_.max_in_flight) {
        Range range = todo_.front();
        todo_.pop_front();
        in_flight.push_back({range, send(range)});
      }
      Pending next = std::move(in_flight.front());
      in_flight.pop_front();
      Frame reply;
      try {
        reply = next.reply.get();
        expect_kind(reply.envelope(), wire::Envelope::EXPERT_CHUNK);
      } catch (const std::exception& e) {
        fail(next.range, e.what());
      }
      accept(next.range, reply.envelope().getExpertChunk());
    }
    std::map<ExpertKey, ExpertWeights> out;
    for (const ExpertKey& key : keys) {
      std::array<OwnedMatrix*, 3> m{};
      for (size_t i = 0; i < 3; ++i) {
        Target& t = targets_.at({key, i});
        if (!t.sized || t.received != t.matrix.bytes.size()) {
          fail({key, i, t.received, 0}, "incomplete: " + std::to_string(t.received) + " of " +
                                            std::to_string(t.matrix.bytes.size()) + " bytes arrived");
        }
        m[i] = &t.matrix;
      }
      out.emplace(key, make_owned_weights(std::move(*m[0]), std::move(*m[1]), std::move(*m[2])));
    }
    return out;
  }

 private:
  std::future<Frame> send(const Range& range) {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<wire::Envelope>().initFetchExpert();
    request.initExpert().setLayer(range.key.layer);
    request.getExpert().setExpert(range.key.expert);
    request.setMatrix(kMatrices[range.matrix]);
    request.setWeightVersion(options_.weight_version);
    request.setOffset(range.offset);
    request.setMaxBytes(static_cast<uint32_t>(range.length));
    set_cluster_token(message, options_.cluster_token);
    return peer_.request(message, options_.timeout);
  }

  [[noreturn]] void fail(const Range& range, const std::string& what) const {
    throw std::runtime_error("streaming " + std::string(matrix_name(kMatrices[range.matrix])) + " of expert " +
                             std::to_string(range.key.expert) + " of layer " + std::to_string(range.key.layer) +
                             " from " + peer_.peer() + " at byte " + std::to_string(range.offset) + ": " + what);
  }

  void accept(const Range& range, wire::ExpertChunk::Reader chunk) {
    if (chunk.getExpert().getLayer() != range.key.layer || chunk.getExpert().getExpert() != range.key.expert ||
        chunk.getMatrix() != kMatrices[range.matrix] || chunk.getOffset() != range.offset) {
      fail(range, "the reply is for " + std::string(matrix_name(chunk.getMatrix())) + " of expert " +
                      std::to_string(chunk.getExpert().getExpert()) + " of layer " +
                      std::to_string(chunk.getExpert().getLayer()) + " at byte " + std::to_string(chunk.getOffset()));
    }
    const int64_t hidden = spec_.hidden_size, inter = spec_.intermediate_of(range.key.expert);
    const bool down = kMatrices[range.matrix] == wire::ExpertMatrix::DOWN;
    const int64_t rows = down ? hidden : inter, cols = down ? inter : hidden;
    if (chunk.getRows() != rows || chunk.getCols() != cols) {
      fail(range, "shape [" + std::to_string(chunk.getRows()) + " x " + std::to_string(chunk.getCols()) +
                      "], the model's is [" + std::to_string(rows) + " x " + std::to_string(cols) + "]");
    }
    DType dtype;
    try {
      dtype = from_wire_dtype(chunk.getDtype());
    } catch (const std::exception& e) {
      fail(range, e.what());
    }
    Target& target = targets_.at({range.key, range.matrix});
    if (!target.sized) {
      target.matrix.dtype = dtype;
      target.matrix.rows = rows;
      target.matrix.cols = cols;
      target.matrix.bytes.resize(static_cast<size_t>(rows) * static_cast<size_t>(cols) * dtype_size(dtype));
      target.sized = true;
    } else if (target.matrix.dtype != dtype) {
      fail(range, std::string("dtype ") + dtype_name(dtype) + ", earlier chunks were " + dtype_name(target.matrix.dtype));
    }
    const uint64_t total = target.matrix.bytes.size();
    auto data = chunk.getData();
    const uint64_t end = std::min(total, range.offset + range.length);
    if (data.size() == 0 || range.offset + data.size() > end) {
      fail(range, std::to_string(data.size()) + " bytes, expected 1.." + std::to_string(end - range.offset) +
                      " (the matrix has " + std::to_string(total) + ")");
    }
    std::memcpy(target.matrix.bytes.data() + range.offset, data.begin(), data.size());
    target.received += data.size();
    const uint64_t got_to = range.offset + data.size();
    if (got_to < end) todo_.push_back({range.key, range.matrix, got_to, end - got_to});
    if (range.offset == 0) {  // the first range of the matrix: queue the rest
      for (uint64_t at = range.offset + range.length; at < total; at += options_.chunk_bytes) {
        todo_.push_back({range.key, range.matrix, at, std::min<uint64_t>(options_.chunk_bytes, total - at)});
      }
    }
  }

  Connection& peer_;
  const ModelSpec& spec_;
  const ExpertFetchOptions& options_;
  std::map<std::pair<ExpertKey, size_t>, Target> targets_;
  std::deque<Range> todo_;
};

}  // namespace

std::map<ExpertKey, ExpertWeights> fetch_experts(Connection& peer, const std::vector<ExpertKey>& keys,
                                                 const ModelSpec& spec, const ExpertFetchOptions& options) {
  if (options.chunk_bytes == 0 || options.max_in_flight == 0) {
    throw std::invalid_argument("fetch_experts: chunk_bytes and max_in_flight must be positive, got " +
                                std::to_string(options.chunk_bytes) + " and " + std::to_string(options.max_in_flight));
  }
  return Fetch(peer, spec, options).run(keys);
}

}  // namespace moe
