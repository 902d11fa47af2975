// write_hf_checkpoint: streams a LayerSource's MoE tensors into (optionally sharded) safetensors files
// plus config.json and, when sharded, model.safetensors.index.json.
#include "runtime/model/hf_checkpoint_writer.h"

#include <cstdio>
#include <fstream>
#include <regex>

#include <nlohmann/json.hpp>

#include "runtime/model/model_error.h"
#include "runtime/model/safetensors_file.h"

namespace moe {
namespace {

// A group of tensors produced together: one layer's router tensors, or one expert's three matrices.
struct Unit {
  int32_t layer = 0;
  int32_t expert = -1;  // -1: router tensors
  size_t bytes = 0;
};

struct Declared {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
};

std::vector<Declared> unit_tensors(const ModelSpec& s, const Unit& u, DType dtype) {
  const int64_t h = s.hidden_size;
  if (u.expert < 0) {
    std::vector<Declared> out{{s.router_weight_name(u.layer), dtype, {s.num_experts, h}}};
    if (s.family == ModelFamily::DeepseekV3) out.push_back({s.correction_bias_name(u.layer), DType::F32, {s.num_experts}});
    if (s.family == ModelFamily::Qwen2Moe && s.has_shared_expert)
      out.push_back({s.shared_gate_name(u.layer), dtype, {1, h}});
    return out;
  }
  const int64_t i = s.intermediate_of(u.expert);
  return {{s.expert_weight_name(u.layer, u.expert, ExpertProj::Gate), dtype, {i, h}},
          {s.expert_weight_name(u.layer, u.expert, ExpertProj::Up), dtype, {i, h}},
          {s.expert_weight_name(u.layer, u.expert, ExpertProj::Down), dtype, {h, i}}};
}

std::span<const std::byte> as_bytes(const std::vector<std::byte>& v) { return {v.data(), v.size()}; }

// A weight matrix as `dtype` bytes: raw copy when the dtype already matches (bit-exact), else via f32.
std::vector<std::byte> matrix_bytes(const WeightMatrixView& m, DType dtype) {
  const size_t n = static_cast<size_t>(m.rows * m.cols);
  if (m.dtype == dtype) {
    const auto* p = static_cast<const std::byte*>(m.data);
    return std::vector<std::byte>(p, p + n * dtype_size(dtype));
  }
  std::vector<float> f(n);
  convert_to_f32(m.dtype, m.data, f.data(), n);
  return encode_floats(f, dtype);
}

void write_unit(SafetensorsWriter& w, const LayerSource& source, const Unit& u, DType dtype) {
  const ModelSpec& s = source.spec();
  if (u.expert < 0) {
    RouterWeights r = source.router_weights(u.layer);
    w.write(as_bytes(encode_floats(r.gate.data, dtype)));
    if (s.family == ModelFamily::DeepseekV3) {
      if (r.correction_bias.size() != static_cast<size_t>(s.num_experts))
        throw ModelError("layer " + std::to_string(u.layer) + ": correction bias has " +
                         std::to_string(r.correction_bias.size()) + " values, expected " + std::to_string(s.num_experts));
      w.write(as_bytes(encode_floats(r.correction_bias, DType::F32)));
    }
    if (s.family == ModelFamily::Qwen2Moe && s.has_shared_expert) {
      if (r.shared_gate.size() != static_cast<size_t>(s.hidden_size))
        throw ModelError("layer " + std::to_string(u.layer) + ": shared expert gate has " +
                         std::to_string(r.shared_gate.size()) + " values, expected " + std::to_string(s.hidden_size));
      w.write(as_bytes(encode_floats(r.shared_gate, dtype)));
    }
    return;
  }
  ExpertWeights e = source.expert_weights(u.layer, u.expert);
  w.write(as_bytes(matrix_bytes(e.view.gate, dtype)));
  w.write(as_bytes(matrix_bytes(e.view.up, dtype)));
  w.write(as_bytes(matrix_bytes(e.view.down, dtype)));
}

const char* torch_dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
  }
  return "float32";
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw ModelError(path.string() + ": write failed");
}

void remove_old_weights(const std::filesystem::path& dir) {
  static const std::regex shard(R"(model-\d+-of-\d+\.safetensors)");
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name == "model.safetensors" || name == "model.safetensors.index.json" || std::regex_match(name, shard))
      std::filesystem::remove(entry.path());
  }
}

std::string shard_name(int index, int count) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05d-of-%05d.safetensors", index + 1, count);
  return buf;
}

}  // namespace

void write_hf_checkpoint(const LayerSource& source, const std::filesystem::path& dir, DType dtype, int shards) {
  const ModelSpec& s = source.spec();
  std::vector<Unit> units;
  size_t total = 0;
  for (int32_t layer : s.moe_layers) {
    for (int32_t e = -1; e < s.experts_per_layer(); ++e) {
      Unit u{layer, e, 0};
      for (const Declared& d : unit_tensors(s, u, dtype)) u.bytes += tensor_nbytes(d.dtype, d.shape);
      total += u.bytes;
      units.push_back(u);
    }
  }
  if (shards < 1 || static_cast<size_t>(shards) > units.size())
    throw ModelError("cannot write " + std::to_string(shards) + " shards: must be in [1, " +
                     std::to_string(units.size()) + "] for this model");

  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw ModelError("cannot create checkpoint directory " + dir.string() + ": " + ec.message());
  remove_old_weights(dir);

  nlohmann::json config = model_spec_to_config(s);
  config["torch_dtype"] = torch_dtype_name(dtype);
  config["dtype"] = torch_dtype_name(dtype);
  write_text(dir / "config.json", config.dump(2) + "\n");

  // Contiguous groups of units, balanced by bytes, one per shard.
  nlohmann::json weight_map = nlohmann::json::object();
  size_t next = 0, done_bytes = 0;
  for (int shard = 0; shard < shards; ++shard) {
    const std::string file = shards == 1 ? "model.safetensors" : shard_name(shard, shards);
    const size_t target = total * static_cast<size_t>(shard + 1) / static_cast<size_t>(shards);
    const size_t units_left_after = static_cast<size_t>(shards - shard - 1);
    std::vector<Unit> mine;
    while (next < units.size() && units.size() - next > units_left_after &&
           (mine.empty() || done_bytes + units[next].bytes <= target || shard == shards - 1)) {
      done_bytes += units[next].bytes;
      mine.push_back(units[next++]);
    }
    SafetensorsWriter w(dir / file);
    for (const Unit& u : mine)
      for (Declared& d : unit_tensors(s, u, dtype)) {
        weight_map[d.name] = file;
        w.declare(d.name, d.dtype, std::move(d.shape));
      }
    w.begin();
    for (const Unit& u : mine) write_unit(w, source, u, dtype);
    w.finish();
  }
  if (shards > 1) {
    nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_text(dir / "model.safetensors.index.json", index.dump(2) + "\n");
  }
}

}  // namespace moe
