// Serving expert chunks to peers (see expert_serve.h).
#include "worker/expert_serve.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "runtime/wire/tensor_pack.h"
#include "runtime/wire/service_error.h"

namespace moe {

void fill_expert_chunk(const ExpertStore& store, wire::FetchExpert::Reader request, uint64_t version,
                       wire::ExpertChunk::Builder chunk, uint64_t current_epoch) {
  const ExpertKey key{request.getExpert().getLayer(), request.getExpert().getExpert()};
  const std::string name = "expert " + std::to_string(key.expert) + " of layer " + std::to_string(key.layer);
  store.check_expert(key);
  std::optional<ExpertWeights> weights = store.retained(key, version);
  if (!weights) {
    throw ServiceError(wire::ErrorCode::EXPERT_NOT_HOSTED,
                       name + " (weight version " + std::to_string(version) + ")" + (store.has(key, version) ? " is loaded, but this worker keeps no copy to stream (it runs without "
                                                "--no-shared-storage)"
                                              : " is not held by this worker"),
                       current_epoch);
  }
  const WeightMatrixView* matrix = nullptr;
  switch (request.getMatrix()) {
    case wire::ExpertMatrix::GATE: matrix = &weights->view.gate; break;
    case wire::ExpertMatrix::UP: matrix = &weights->view.up; break;
    case wire::ExpertMatrix::DOWN: matrix = &weights->view.down; break;
  }
  if (!matrix) {
    throw ServiceError(wire::ErrorCode::BAD_REQUEST,
                       "fetchExpert names matrix " + std::to_string(static_cast<unsigned>(request.getMatrix())) +
                           " (known: gate, up, down)",
                       current_epoch);
  }
  const uint64_t total = static_cast<uint64_t>(matrix->rows) * static_cast<uint64_t>(matrix->cols) * dtype_size(matrix->dtype);
  const uint64_t offset = request.getOffset();
  if (request.getMaxBytes() == 0) {
    throw ServiceError(wire::ErrorCode::BAD_REQUEST, "fetchExpert of " + name + " asks for 0 bytes", current_epoch);
  }
  if (offset >= total) {
    throw ServiceError(wire::ErrorCode::BAD_REQUEST,
                       "fetchExpert of " + name + " at byte " + std::to_string(offset) + ", the matrix has " +
                           std::to_string(total) + " bytes",
                       current_epoch);
  }
  const uint64_t size = std::min<uint64_t>({total - offset, request.getMaxBytes(), kMaxExpertChunkBytes});
  chunk.initExpert().setLayer(key.layer);
  chunk.getExpert().setExpert(key.expert);
  chunk.setMatrix(request.getMatrix());
  chunk.setDtype(to_wire_dtype(matrix->dtype));  // never f16: ExpertStore widens retained f16 to f32
  chunk.setRows(static_cast<uint32_t>(matrix->rows));
  chunk.setCols(static_cast<uint32_t>(matrix->cols));
  chunk.setOffset(offset);
  auto data = chunk.initData(static_cast<unsigned>(size));
  std::memcpy(data.begin(), static_cast<const std::byte*>(matrix->data) + offset, size);
}

}  // namespace moe
