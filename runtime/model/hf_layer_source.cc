// HfLayerSource: router and expert weights of one MoE layer read from an HF checkpoint, in each family's
// tensor layout (ModelSpec::layout) and weight format (ModelSpec::quant).
#include "runtime/model/hf_layer_source.h"

#include <cstdlib>
#include <cstring>

#include "runtime/model/model_error.h"
#include "runtime/model/quantized_weights.h"

namespace moe {
namespace {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

WeightMatrixView matrix_view(const TensorView& t) {
  return WeightMatrixView{t.dtype, t.data, t.shape[0], t.shape[1]};
}

bool float_dtype(const std::string& name) { return name == "F32" || name == "BF16" || name == "F16"; }

// Keeps the files behind one expert's tensors mapped (they may live in different shards).
struct ExpertFiles {
  std::shared_ptr<const SafetensorsFile> gate, up, down;
};

// Owned matrices and vectors of an expert that had to be rearranged or dequantized.
struct OwnedExpert {
  std::vector<std::byte> gate, up, down, gate_bias, up_bias, down_bias;
};

// Stores f32 values as `dtype` (F32 copy or BF16 rounding) into `bytes`.
void store(const std::vector<float>& values, DType dtype, std::vector<std::byte>& bytes) {
  bytes.resize(values.size() * dtype_size(dtype));
  if (dtype == DType::F32) {
    std::memcpy(bytes.data(), values.data(), bytes.size());
    return;
  }
  auto* out = reinterpret_cast<uint16_t*>(bytes.data());
  for (size_t i = 0; i < values.size(); ++i) out[i] = f32_to_bf16(values[i]);
}

// Element (i) of a float tensor, copied in its own dtype.
void copy_element(const TensorView& t, int64_t i, std::byte* dst) {
  const size_t sz = dtype_size(t.dtype);
  std::memcpy(dst, static_cast<const std::byte*>(t.data) + i * sz, sz);
}

}  // namespace

HfLayerSource::HfLayerSource(const std::filesystem::path& model_dir, const HfLayerSourceOptions& options)
    : spec_(load_model_spec(model_dir)), checkpoint_(model_dir), options_(options) {
  if (options_.dequant_dtype != DType::F32 && options_.dequant_dtype != DType::BF16)
    throw ModelError(std::string("dequantization dtype must be F32 or BF16, got ") + dtype_name(options_.dequant_dtype));
}

TensorView HfLayerSource::checked(const std::string& name, std::vector<int64_t> expected_shape) const {
  TensorView t = checkpoint_.find_raw(name);
  if (!float_dtype(t.dtype_name)) {
    if (t.dtype_name.rfind("F8_", 0) == 0 && spec_.quant == WeightQuant::None)
      throw ModelError("tensor '" + name + "' is " + t.dtype_name + " but " + checkpoint_.dir().string() +
                       "/config.json has no quantization_config (fp8 with weight_block_size)");
    throw ModelError("tensor '" + name + "' has unsupported dtype " + t.dtype_name + " (supported: F32, BF16, F16" +
                     std::string(spec_.quant == WeightQuant::Fp8Block ? ", F8_E4M3 expert weights with scales" : "") +
                     ")");
  }
  if (t.shape != expected_shape)
    throw ModelError("tensor '" + name + "' has shape " + t.shape_string() + ", expected " +
                     shape_string(expected_shape) + " (in " + checkpoint_.dir().string() + ")");
  return t;
}

RouterWeights HfLayerSource::router_weights(int32_t layer) const {
  spec_.require_moe_layer(layer);
  const int64_t e = spec_.num_experts, h = spec_.hidden_size;
  RouterWeights w;
  w.gate = tensor_to_matrix(checked(spec_.router_weight_name(layer), {e, h}));
  if (spec_.has_router_bias()) {
    const std::string name = spec_.correction_bias_name(layer);
    w.correction_bias = tensor_to_floats(
        checked(name, spec_.family == ModelFamily::Ernie45Moe ? std::vector<int64_t>{1, e} : std::vector<int64_t>{e}));
  }
  if (spec_.has_shared_expert && spec_.shared_expert_gated)
    w.shared_gate = tensor_to_floats(checked(spec_.shared_gate_name(layer), {1, h}));
  return w;
}

ExpertWeights HfLayerSource::expert_weights(int32_t layer, int32_t expert) const {
  spec_.require_moe_layer(layer);
  if (expert < 0 || expert >= spec_.experts_per_layer())
    throw ModelError("expert " + std::to_string(expert) + " is out of range (" + std::to_string(spec_.num_experts) +
                     " routed experts" +
                     (spec_.has_shared_expert ? " + shared expert " + std::to_string(spec_.num_experts) : "") + ")");
  ExpertWeights w = spec_.fused_expert(expert) ? fused_expert(layer, expert) : per_expert(layer, expert);
  w.view.math = spec_.math_of(expert);
  return w;
}

ExpertWeights HfLayerSource::per_expert(int32_t layer, int32_t expert) const {
  const int64_t h = spec_.hidden_size;
  const int64_t i = spec_.intermediate_of(expert);
  const std::string names[3] = {spec_.expert_weight_name(layer, expert, ExpertProj::Gate),
                                spec_.expert_weight_name(layer, expert, ExpertProj::Up),
                                spec_.expert_weight_name(layer, expert, ExpertProj::Down)};
  const std::vector<int64_t> shapes[3] = {{i, h}, {i, h}, {h, i}};
  bool any_fp8 = false;
  if (spec_.quant == WeightQuant::Fp8Block)
    for (const auto& n : names) any_fp8 |= checkpoint_.find_raw(n).dtype_name == "F8_E4M3";
  if (!any_fp8) {
    TensorView gate = checked(names[0], shapes[0]);
    TensorView up = checked(names[1], shapes[1]);
    TensorView down = checked(names[2], shapes[2]);
    ExpertWeights w;
    w.view = ExpertWeightsView{matrix_view(gate), matrix_view(up), matrix_view(down)};
    w.owner = std::make_shared<const ExpertFiles>(ExpertFiles{gate.file, up.file, down.file});
    return w;
  }
  // FP8 block-quantized: dequantize each matrix once, into the configured dtype.
  auto owned = std::make_shared<OwnedExpert>();
  std::vector<std::byte>* dst[3] = {&owned->gate, &owned->up, &owned->down};
  WeightMatrixView views[3];
  for (int p = 0; p < 3; ++p) {
    TensorView t = checkpoint_.find_raw(names[p]);
    if (t.shape != shapes[p])
      throw ModelError("tensor '" + names[p] + "' has shape " + t.shape_string() + ", expected " +
                       shape_string(shapes[p]) + " (in " + checkpoint_.dir().string() + ")");
    std::vector<float> values(static_cast<size_t>(t.numel()));
    if (t.dtype_name == "F8_E4M3") {
      const std::string scale_name = names[p] + "_scale_inv";
      if (!checkpoint_.contains(scale_name))
        throw ModelError("fp8 tensor '" + names[p] + "' has no scale tensor '" + scale_name + "' in " +
                         checkpoint_.dir().string());
      dequantize_fp8_block(t, checkpoint_.find_raw(scale_name), spec_.quant_block_rows, spec_.quant_block_cols,
                           values.data());
    } else {
      TensorView f = checked(names[p], shapes[p]);
      convert_to_f32(f.dtype, f.data, values.data(), values.size());
    }
    store(values, options_.dequant_dtype, *dst[p]);
    views[p] = WeightMatrixView{options_.dequant_dtype, dst[p]->data(), shapes[p][0], shapes[p][1]};
  }
  ExpertWeights w;
  w.view = ExpertWeightsView{views[0], views[1], views[2]};
  w.owner = owned;
  return w;
}

// llama4 / gpt_oss: routed experts fused per layer. gate_up [E, H, 2I] (or MXFP4 blocks [E, 2I, H/32, 16]),
// down [E, I, H] (MXFP4: [E, H, I/32, 16]); gate/up are the halves (llama4) or interleaved (gpt_oss).
ExpertWeights HfLayerSource::fused_expert(int32_t layer, int32_t expert) const {
  const int64_t h = spec_.hidden_size, i = spec_.moe_intermediate_size, e = spec_.num_experts;
  const bool interleaved = spec_.layout() == ExpertLayout::FusedInterleaved;
  auto owned = std::make_shared<OwnedExpert>();
  ExpertWeights w;
  // column c (of 2I) that holds row r of gate (is_up false) or up
  auto column = [&](int64_t r, bool is_up) { return interleaved ? 2 * r + (is_up ? 1 : 0) : (is_up ? i + r : r); };

  // An mxfp4 config over experts stored unquantized (a dequantized re-release) reads them as they are.
  const bool mxfp4 = spec_.quant == WeightQuant::Mxfp4 &&
                     !checkpoint_.contains(spec_.fused_expert_name(layer, "gate_up_proj"));
  if (mxfp4) {
    const DType out = options_.dequant_dtype;
    auto pair = [&](const std::string& proj, int64_t rows, int64_t cols) {
      const std::string blocks_name = spec_.fused_expert_name(layer, proj + "_blocks");
      const std::string scales_name = spec_.fused_expert_name(layer, proj + "_scales");
      if (!checkpoint_.contains(blocks_name))
        throw ModelError("mxfp4 checkpoint " + checkpoint_.dir().string() + " has no tensor '" + blocks_name + "'");
      if (!checkpoint_.contains(scales_name))
        throw ModelError("mxfp4 tensor '" + blocks_name + "' has no scale tensor '" + scales_name + "' in " +
                         checkpoint_.dir().string());
      TensorView b = checkpoint_.find_raw(blocks_name), s = checkpoint_.find_raw(scales_name);
      const std::vector<int64_t> want = {e, rows, cols / 32, 16};
      if (cols % 32 != 0 || b.shape != want)
        throw ModelError("mxfp4 blocks '" + blocks_name + "' has shape " + b.shape_string() + ", expected " +
                         shape_string(want));
      std::vector<float> values(static_cast<size_t>(rows * cols));
      dequantize_mxfp4_rows(b, s, expert * rows, rows, values.data());
      return values;
    };
    std::vector<float> gate_up = pair("gate_up_proj", 2 * i, h);  // [2I, H], rows interleaved gate/up
    std::vector<float> gate(static_cast<size_t>(i * h)), up(static_cast<size_t>(i * h));
    for (int64_t r = 0; r < i; ++r) {
      std::memcpy(&gate[r * h], &gate_up[column(r, false) * h], h * sizeof(float));
      std::memcpy(&up[r * h], &gate_up[column(r, true) * h], h * sizeof(float));
    }
    store(gate, out, owned->gate);
    store(up, out, owned->up);
    store(pair("down_proj", h, i), out, owned->down);  // [H, I] already
    w.view.gate = WeightMatrixView{out, owned->gate.data(), i, h};
    w.view.up = WeightMatrixView{out, owned->up.data(), i, h};
    w.view.down = WeightMatrixView{out, owned->down.data(), h, i};
  } else {
    TensorView gu = checked(spec_.fused_expert_name(layer, "gate_up_proj"), {e, h, 2 * i});
    TensorView dn = checked(spec_.fused_expert_name(layer, "down_proj"), {e, i, h});
    const size_t sz = dtype_size(gu.dtype), dsz = dtype_size(dn.dtype);
    owned->gate.resize(i * h * sz);
    owned->up.resize(i * h * sz);
    owned->down.resize(h * i * dsz);
    const int64_t base = expert * h * 2 * i;
    for (int64_t r = 0; r < i; ++r)
      for (int64_t c = 0; c < h; ++c) {  // gate[r, c] = gate_up[expert, c, column(r)]
        copy_element(gu, base + c * 2 * i + column(r, false), &owned->gate[(r * h + c) * sz]);
        copy_element(gu, base + c * 2 * i + column(r, true), &owned->up[(r * h + c) * sz]);
      }
    const int64_t dbase = expert * i * h;
    for (int64_t r = 0; r < h; ++r)
      for (int64_t c = 0; c < i; ++c)  // down[r, c] = down_proj[expert, c, r]
        copy_element(dn, dbase + c * h + r, &owned->down[(r * i + c) * dsz]);
    w.view.gate = WeightMatrixView{gu.dtype, owned->gate.data(), i, h};
    w.view.up = WeightMatrixView{gu.dtype, owned->up.data(), i, h};
    w.view.down = WeightMatrixView{dn.dtype, owned->down.data(), h, i};
  }
  if (spec_.expert_biases()) {
    TensorView gb = checked(spec_.fused_expert_name(layer, "gate_up_proj_bias"), {e, 2 * i});
    TensorView db = checked(spec_.fused_expert_name(layer, "down_proj_bias"), {e, h});
    const size_t sz = dtype_size(gb.dtype), dsz = dtype_size(db.dtype);
    owned->gate_bias.resize(i * sz);
    owned->up_bias.resize(i * sz);
    owned->down_bias.resize(h * dsz);
    for (int64_t r = 0; r < i; ++r) {
      copy_element(gb, expert * 2 * i + column(r, false), &owned->gate_bias[r * sz]);
      copy_element(gb, expert * 2 * i + column(r, true), &owned->up_bias[r * sz]);
    }
    std::memcpy(owned->down_bias.data(), static_cast<const std::byte*>(db.data) + expert * h * dsz, h * dsz);
    w.view.gate_bias = WeightVectorView{gb.dtype, owned->gate_bias.data(), i};
    w.view.up_bias = WeightVectorView{gb.dtype, owned->up_bias.data(), i};
    w.view.down_bias = WeightVectorView{db.dtype, owned->down_bias.data(), h};
  }
  w.owner = owned;
  return w;
}

}  // namespace moe

namespace moe {

HfLayerSourceOptions HfLayerSourceOptions::from_env() {
  HfLayerSourceOptions o;
  const char* v = std::getenv("MOE_DEQUANT_DTYPE");
  if (v == nullptr || *v == '\0') return o;
  const std::string s(v);
  if (s == "f32" || s == "F32") o.dequant_dtype = DType::F32;
  else if (s == "bf16" || s == "BF16") o.dequant_dtype = DType::BF16;
  else throw ModelError("MOE_DEQUANT_DTYPE must be f32 or bf16, got '" + s + "'");
  return o;
}

}  // namespace moe
