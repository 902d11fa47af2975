// An HF checkpoint directory's weights: one `model.safetensors`, or shards listed in
// `model.safetensors.index.json` (its "weight_map": tensor name -> shard file). Shards are mapped lazily,
// on the first lookup of a tensor they hold, so a worker that loads a few experts touches few files.
// Thread-safe.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/model/safetensors_file.h"

namespace moe {

class Checkpoint {
 public:
  // Throws ModelError when `dir` is missing or holds neither model.safetensors nor a valid index
  // (the index is parsed here; shard files are opened on first use). Like HF transformers, a single
  // model.safetensors wins over an index when both exist.
  explicit Checkpoint(std::filesystem::path dir);

  const std::filesystem::path& dir() const { return dir_; }
  bool sharded() const { return sharded_; }
  bool contains(const std::string& name) const;
  // The tensor (its view keeps the shard mapped). Throws ModelError "tensor 'NAME' not found in DIR",
  // or the shard's own error (missing/corrupt shard, unsupported dtype).
  TensorView find(const std::string& name) const;
  // The same for a tensor of any dtype (quantized weights); see TensorView::dtype_name.
  TensorView find_raw(const std::string& name) const;
  std::vector<std::string> names() const;  // sorted
  // Shard file names (just "model.safetensors" when not sharded).
  std::vector<std::string> files() const;

 private:
  std::shared_ptr<const SafetensorsFile> file(const std::string& file_name) const;
  TensorView find_impl(const std::string& name, bool raw) const;

  std::filesystem::path dir_;
  bool sharded_ = false;
  std::map<std::string, std::string> weight_map_;  // sharded: tensor -> shard file name
  mutable std::mutex mutex_;
  mutable std::map<std::string, std::shared_ptr<const SafetensorsFile>> open_;
};

}  // namespace moe
