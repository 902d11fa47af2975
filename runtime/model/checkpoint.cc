// Checkpoint: resolves tensor names to (lazily mapped) safetensors files of an HF checkpoint directory.
#include "runtime/model/checkpoint.h"

#include <algorithm>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "runtime/model/model_error.h"

namespace moe {
namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

}  // namespace

Checkpoint::Checkpoint(std::filesystem::path dir) : dir_(std::move(dir)) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir_, ec))
    throw ModelError("checkpoint directory " + dir_.string() + " does not exist or is not a directory");
  if (std::filesystem::is_regular_file(dir_ / kSingleFile, ec)) return;
  const std::filesystem::path index_path = dir_ / kIndexFile;
  if (!std::filesystem::exists(index_path, ec))
    throw ModelError("checkpoint directory " + dir_.string() + " has no weights: neither " + kSingleFile + " nor " +
                     kIndexFile);
  std::ifstream in(index_path);
  if (!in) throw ModelError(index_path.string() + ": cannot read");
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw ModelError(index_path.string() + ": not valid JSON: " + e.what());
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    throw ModelError(index_path.string() + ": missing object 'weight_map'");
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
    if (!it.value().is_string())
      throw ModelError(index_path.string() + ": weight_map entry '" + it.key() + "' is not a file name");
    std::string file = it.value().get<std::string>();
    if (file.empty() || file.find('/') != std::string::npos || file.find('\\') != std::string::npos ||
        file == "." || file == "..")
      throw ModelError(index_path.string() + ": weight_map entry '" + it.key() + "' names '" + file +
                       "', not a file in the checkpoint directory");
    weight_map_.emplace(it.key(), std::move(file));
  }
  if (weight_map_.empty()) throw ModelError(index_path.string() + ": weight_map is empty");
  sharded_ = true;
}

std::shared_ptr<const SafetensorsFile> Checkpoint::file(const std::string& file_name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = open_.find(file_name);
  if (it != open_.end()) return it->second;
  const std::filesystem::path path = dir_ / file_name;
  std::error_code ec;
  if (sharded_ && !std::filesystem::exists(path, ec))
    throw ModelError("shard " + path.string() + " listed in " + kIndexFile + " does not exist");
  auto f = SafetensorsFile::open(path);
  open_.emplace(file_name, f);
  return f;
}

bool Checkpoint::contains(const std::string& name) const {
  if (sharded_) return weight_map_.count(name) != 0;
  return file(kSingleFile)->contains(name);
}

TensorView Checkpoint::find(const std::string& name) const { return find_impl(name, false); }
TensorView Checkpoint::find_raw(const std::string& name) const { return find_impl(name, true); }

TensorView Checkpoint::find_impl(const std::string& name, bool raw) const {
  if (!sharded_) {
    auto f = file(kSingleFile);
    if (!f->contains(name)) throw ModelError("tensor '" + name + "' not found in " + dir_.string());
    return raw ? f->raw_tensor(name) : f->tensor(name);
  }
  auto it = weight_map_.find(name);
  if (it == weight_map_.end()) throw ModelError("tensor '" + name + "' not found in " + dir_.string());
  auto f = file(it->second);
  if (!f->contains(name))
    throw ModelError("tensor '" + name + "' not found in " + f->path().string() + " (" + kIndexFile +
                     " maps it there)");
  return raw ? f->raw_tensor(name) : f->tensor(name);
}

std::vector<std::string> Checkpoint::names() const {
  if (!sharded_) return file(kSingleFile)->names();
  std::vector<std::string> out;
  for (const auto& [name, shard] : weight_map_) out.push_back(name);
  return out;
}

std::vector<std::string> Checkpoint::files() const {
  if (!sharded_) return {kSingleFile};
  std::set<std::string> unique;
  for (const auto& [name, shard] : weight_map_) unique.insert(shard);
  return {unique.begin(), unique.end()};
}

}  // namespace moe
