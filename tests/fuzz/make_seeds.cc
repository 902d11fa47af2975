// Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/<target>/) from real encoders, so that
// the seeds follow the schema and file formats: fuzz_make_seeds OUT_DIR. The committed corpus was made
// with it; rerun it after a schema change and commit the result.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <capnp/message.h>
#include <nlohmann/json.hpp>

#include "runtime/model/model_spec.h"
#include "runtime/model/safetensors_file.h"
#include "runtime/wire/envelope_util.h"
#include "runtime/wire/framing.h"
#include "runtime/wire/tensor_pack.h"

namespace fs = std::filesystem;

namespace {

using Bytes = std::vector<uint8_t>;

void write(const fs::path& dir, const std::string& name, const Bytes& bytes) {
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

Bytes to_bytes(const kj::Array<capnp::word>& frame) {
  auto span = moe::frame_bytes(frame);
  return Bytes(reinterpret_cast<const uint8_t*>(span.data()), reinterpret_cast<const uint8_t*>(span.data()) + span.size());
}

Bytes forward_request(moe::wire::DType dtype, uint32_t tokens, int32_t layer) {
  capnp::MallocMessageBuilder m;
  auto e = m.initRoot<moe::wire::Envelope>();
  e.setRequestId(7);
  auto r = e.initForwardRequest();
  r.setEpoch(3);
  r.setLayer(layer);
  r.setDtype(dtype);
  r.setNumTokens(tokens);
  r.setHidden(16);
  std::vector<float> x(size_t{tokens} * 16, 0.5f);
  auto blob = r.initTokens(static_cast<unsigned>(moe::packed_tensor_bytes(dtype, x.size())));
  moe::pack_tensor(x, dtype, blob);
  auto ti = r.initTokenIndex(tokens * 2);
  auto ei = r.initExpertId(tokens * 2);
  auto w = r.initWeight(tokens * 2);
  for (uint32_t i = 0; i < tokens * 2; ++i) {
    ti.set(i, static_cast<int32_t>(i / 2));
    ei.set(i, static_cast<int32_t>(i % 9));
    w.set(i, 0.5f);
  }
  r.setDeadlineMs(1000);
  return to_bytes(moe::encode_frame(m));
}

Bytes error_reply() {
  capnp::MallocMessageBuilder m;
  auto e = m.initRoot<moe::wire::Envelope>();
  e.setRequestId(9);
  moe::set_error(e, moe::wire::ErrorCode::STALE_EPOCH, "epoch 3 is gone", 4);
  return to_bytes(moe::encode_frame(m));
}

Bytes placement() {
  capnp::MallocMessageBuilder m;
  auto p = m.initRoot<moe::wire::Envelope>().initPlacement();
  p.setEpoch(5);
  auto workers = p.initWorkers(2);
  workers[0].setId(1);
  workers[0].setAddress("127.0.0.1:7401");
  workers[1].setId(2);
  workers[1].setAddress("127.0.0.1:7402");
  auto a = p.initAssignments(2);
  for (unsigned i = 0; i < 2; ++i) {
    a[i].setLayer(1);
    a[i].setExpert(static_cast<int32_t>(i));
    auto reps = a[i].initReplicas(1);
    reps[0].setWorkerId(i + 1);
    reps[0].setShare(1.f);
  }
  return to_bytes(moe::encode_frame(m));
}

Bytes heartbeat() {
  capnp::MallocMessageBuilder m;
  auto h = m.initRoot<moe::wire::Envelope>().initHeartbeat();
  h.setWorkerId(2);
  h.setEpoch(5);
  auto load = h.initLoad(2);
  load[0].setLayer(1);
  load[0].setTokens(100);
  load[1].setLayer(1);
  load[1].setExpert(3);
  return to_bytes(moe::encode_frame(m));
}

Bytes model_info() {
  capnp::MallocMessageBuilder m;
  auto info = m.initRoot<moe::wire::Envelope>().initModelInfo();
  info.setSpecJson("{\"model_type\": \"mixtral\"}");
  info.setName("tiny");
  auto routers = info.initRouters(1);
  routers[0].setLayer(0);
  routers[0].setNumExperts(2);
  routers[0].setHidden(2);
  routers[0].initWeight(16);
  return to_bytes(moe::encode_frame(m));
}

Bytes cat(std::initializer_list<Bytes> parts, uint8_t first) {
  Bytes out{first};
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

Bytes text(const std::string& s) { return Bytes(s.begin(), s.end()); }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fuzz_make_seeds OUT_DIR\n";
    return 2;
  }
  const fs::path out = argv[1];
  const Bytes fwd_f32 = forward_request(moe::wire::DType::F32, 2, 1);
  const Bytes fwd_bf16 = forward_request(moe::wire::DType::BF16, 3, 2);
  const Bytes err = error_reply(), plc = placement(), hb = heartbeat(), info = model_info();

  for (auto [name, bytes] : {std::pair{"forward_f32", fwd_f32}, {"forward_bf16", fwd_bf16}, {"error", err},
                             {"placement", plc}, {"heartbeat", hb}, {"model_info", info}})
    write(out / "fuzz_envelope", name, bytes);

  write(out / "fuzz_frame_stream", "three_frames", cat({fwd_f32, err, plc}, 7));
  write(out / "fuzz_frame_stream", "two_frames_byte_steps", cat({hb, info}, 0));
  Bytes truncated = cat({fwd_bf16}, 12);
  truncated.resize(truncated.size() - 5);
  write(out / "fuzz_frame_stream", "truncated", truncated);

  write(out / "fuzz_forward_request", "raw_f32", cat({fwd_f32}, 1));
  write(out / "fuzz_forward_request", "raw_bf16", cat({fwd_bf16}, 1));
  write(out / "fuzz_forward_request", "built", Bytes(96, 0x11));

  // safetensors: files written by the project's own writer.
  const fs::path tmp = fs::temp_directory_path() / "moe_fuzz_seeds";
  fs::create_directories(tmp);
  std::vector<float> m6 = {1, 2, 3, 4, 5, 6};
  auto bf16 = moe::encode_floats(m6, moe::DType::BF16);
  std::vector<std::byte> f32(sizeof(float) * m6.size());
  std::memcpy(f32.data(), m6.data(), f32.size());
  std::vector<moe::TensorToWrite> tensors = {{"a.weight", moe::DType::F32, {2, 3}, f32},
                                             {"b.weight", moe::DType::BF16, {6}, bf16}};
  moe::write_safetensors(tmp / "two.safetensors", tensors, {{"note", "seed"}});
  write(out / "fuzz_safetensors", "two_tensors", file_bytes(tmp / "two.safetensors"));
  {
    moe::SafetensorsWriter w(tmp / "raw.safetensors");
    w.declare_raw("topk_ids", "I32", 4, {2, 1});
    w.declare("empty", moe::DType::F16, {0, 4});
    w.begin();
    int32_t ids[2] = {1, 0};
    w.write(std::as_bytes(std::span<const int32_t>(ids)));
    w.finish();
  }
  write(out / "fuzz_safetensors", "raw_and_empty", file_bytes(tmp / "raw.safetensors"));
  fs::remove_all(tmp);

  // config.json: what model_spec_to_config writes for each family, plus a few HF-style variations.
  const std::string configs[] = {
      R"({"model_type":"mixtral","hidden_size":32,"num_hidden_layers":2,"num_experts_per_tok":2,"intermediate_size":64,"num_local_experts":4})",
      R"({"model_type":"qwen2_moe","hidden_size":32,"num_hidden_layers":4,"num_experts_per_tok":2,"moe_intermediate_size":16,"num_experts":8,"shared_expert_intermediate_size":32,"decoder_sparse_step":2,"mlp_only_layers":[3]})",
      R"({"model_type":"qwen3_moe","hidden_size":32,"num_hidden_layers":2,"num_experts_per_tok":2,"moe_intermediate_size":16,"num_local_experts":8,"norm_topk_prob":true})",
      R"({"model_type":"deepseek_v3","hidden_size":32,"num_hidden_layers":3,"num_experts_per_tok":4,"moe_intermediate_size":16,"n_routed_experts":8,"n_shared_experts":2,"first_k_dense_replace":1,"n_group":4,"topk_group":2,"routed_scaling_factor":2.5})",
  };
  int i = 0;
  for (const auto& c : configs) {
    write(out / "fuzz_model_config", "hand_" + std::to_string(i++), text(c));
    auto written = moe::model_spec_to_config(moe::parse_model_spec(nlohmann::json::parse(c)));
    write(out / "fuzz_model_config", "written_" + std::to_string(i), text(written.dump(1)));
  }
  std::cout << "seeds written to " << out << "\n";
  return 0;
}
