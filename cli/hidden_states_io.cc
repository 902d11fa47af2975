// Reading and writing the safetensors files of `moectl forward`.
#include "cli/hidden_states_io.h"

#include <cstring>
#include <string>
#include <vector>

#include "runtime/model/model_error.h"
#include "runtime/model/safetensors_file.h"

namespace moe::cli {

namespace {
constexpr const char* kHidden = "hidden_states";

template <typename T>
std::span<const std::byte> as_bytes_of(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}
}  // namespace

Matrix read_hidden_states(const std::filesystem::path& path, int64_t expect_hidden) {
  if (!std::filesystem::exists(path)) throw ModelError("input file " + path.string() + " does not exist");
  auto file = SafetensorsFile::open(path);
  if (!file->contains(kHidden)) {
    throw ModelError(path.string() + " has no tensor 'hidden_states' (it holds " +
                     std::to_string(file->names().size()) + " other tensors)");
  }
  TensorView t = file->tensor(kHidden);
  if (t.shape.size() != 2) {
    throw ModelError(path.string() + ": tensor 'hidden_states' has shape " + t.shape_string() +
                     ", expected [T, " + std::to_string(expect_hidden) + "]");
  }
  if (t.shape[1] != expect_hidden) {
    throw ModelError(path.string() + ": tensor 'hidden_states' has hidden size " + std::to_string(t.shape[1]) +
                     " (shape " + t.shape_string() + "), the model expects " + std::to_string(expect_hidden));
  }
  return tensor_to_matrix(t);
}

void write_hidden_states(const std::filesystem::path& path, const Matrix& out) {
  TensorToWrite t{kHidden, DType::F32, {out.rows, out.cols}, as_bytes_of(out.data)};
  write_safetensors(path, std::span<const TensorToWrite>(&t, 1));
}

void write_routing(const std::filesystem::path& path, const RoutingResult& routing) {
  std::vector<int64_t> shape{routing.num_tokens, routing.top_k};
  // safetensors has no I32 in DType (we only compute in floats), so write the ids through the raw writer.
  SafetensorsWriter writer(path);
  writer.declare_raw("topk_ids", "I32", 4, shape);
  writer.declare("topk_weights", DType::F32, shape);
  writer.begin();
  writer.write(as_bytes_of(routing.topk_ids));
  writer.write(as_bytes_of(routing.topk_weights));
  writer.finish();
}

}  // namespace moe::cli
