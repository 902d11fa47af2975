// Fuzz target: the worker's forwardRequest checks (worker/forward_validation.*) against a small
// deepseek_v3 spec (a dense layer 0, MoE layers 1-2, 8 routed experts + a shared one, hidden 16).
// The first input byte picks the mode: odd, the rest is a raw frame (decoded and validated as the io
// thread does); even, the rest drives a FuzzedDataProvider that builds a forwardRequest field by field
// (sizes near the edges, lists of different lengths, indices out of range). A request the validator
// accepts must be safe for the compute thread: every assignment's token and expert in range, and the
// tokens blob unpacking to numTokens x hidden values.
#include <fuzzer/FuzzedDataProvider.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>

#include <capnp/message.h>
#include <nlohmann/json.hpp>

#include "runtime/model/model_spec.h"
#include "runtime/wire/framing.h"
#include "runtime/wire/tensor_pack.h"
#include "tests/fuzz/fuzz_check.h"
#include "worker/forward_validation.h"
#include "runtime/wire/service_error.h"

namespace {

const moe::ModelSpec& spec() {
  static const moe::ModelSpec s = moe::parse_model_spec(nlohmann::json{
      {"model_type", "deepseek_v3"}, {"hidden_size", 16}, {"num_hidden_layers", 3}, {"num_experts_per_tok", 2},
      {"moe_intermediate_size", 8}, {"n_routed_experts", 8}, {"n_shared_experts", 1}, {"first_k_dense_replace", 1},
      {"n_group", 2}, {"topk_group", 1}});
  return s;
}

moe::FrameLimits limits() {
  moe::FrameLimits l;
  l.max_message_bytes = 1u << 20;
  l.max_segments = 64;
  return l;
}

kj::Array<capnp::word> build_request(FuzzedDataProvider& in) {
  capnp::MallocMessageBuilder message;
  auto envelope = message.initRoot<moe::wire::Envelope>();
  envelope.setRequestId(in.ConsumeIntegral<uint64_t>());
  auto r = envelope.initForwardRequest();
  r.setEpoch(in.ConsumeIntegral<uint64_t>());
  r.setLayer(in.ConsumeBool() ? in.ConsumeIntegralInRange<int32_t>(-1, 4) : in.ConsumeIntegral<int32_t>());
  r.setDtype(static_cast<moe::wire::DType>(in.ConsumeIntegralInRange<uint16_t>(0, 3)));
  r.setNumTokens(in.ConsumeBool() ? in.ConsumeIntegralInRange<uint32_t>(0, 8) : in.ConsumeIntegral<uint32_t>());
  r.setHidden(in.ConsumeBool() ? 16u : in.ConsumeIntegral<uint32_t>());
  r.setDeadlineMs(in.ConsumeIntegral<uint32_t>());
  // Usually the size the header announces, sometimes a little off.
  uint64_t want = uint64_t{r.getNumTokens()} * r.getHidden() * (r.getDtype() == moe::wire::DType::BF16 ? 2 : 4);
  int delta = in.ConsumeIntegralInRange<int>(-2, 2);
  size_t blob = want > 4096 ? in.ConsumeIntegralInRange<size_t>(0, 4096) : static_cast<size_t>(std::max<int64_t>(0, int64_t(want) + delta));
  auto tokens = r.initTokens(static_cast<unsigned>(blob));
  for (auto& b : tokens) b = in.ConsumeIntegral<uint8_t>();
  const unsigned n = in.ConsumeIntegralInRange<unsigned>(0, 64);
  const unsigned lengths[3] = {n, in.ConsumeBool() ? n : in.ConsumeIntegralInRange<unsigned>(0, 64),
                               in.ConsumeBool() ? n : in.ConsumeIntegralInRange<unsigned>(0, 64)};
  auto token_index = r.initTokenIndex(lengths[0]);
  auto expert_id = r.initExpertId(lengths[1]);
  auto weight = r.initWeight(lengths[2]);
  for (unsigned i = 0; i < lengths[0]; ++i)
    token_index.set(i, in.ConsumeBool() ? in.ConsumeIntegralInRange<int32_t>(-1, 9) : in.ConsumeIntegral<int32_t>());
  for (unsigned i = 0; i < lengths[1]; ++i)
    expert_id.set(i, in.ConsumeBool() ? in.ConsumeIntegralInRange<int32_t>(-1, 9) : in.ConsumeIntegral<int32_t>());
  for (unsigned i = 0; i < lengths[2]; ++i) weight.set(i, in.ConsumeFloatingPoint<float>());
  if (in.ConsumeBool()) r.setClusterToken(in.ConsumeRandomLengthString(32));
  return moe::encode_frame(message);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  moe::Frame frame;
  try {
    if (data[0] & 1) {
      frame = moe::decode_frame(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data + 1), size - 1),
                                limits());
    } else {
      FuzzedDataProvider in(data + 1, size - 1);
      auto words = build_request(in);
      frame = moe::decode_frame(moe::frame_bytes(words), limits());
    }
  } catch (const moe::FrameError&) {
    return 0;
  }
  if (!frame.envelope().isForwardRequest()) return 0;
  moe::ForwardJob job(std::move(frame), moe::Responder({}, 0), moe::ForwardJob::Clock::now());
  try {
    moe::validate_forward_request(spec(), job);
  } catch (const moe::ServiceError&) {
    return 0;
  }
  const int32_t experts = spec().experts_per_layer();
  FUZZ_CHECK(spec().is_moe_layer(job.layer), "accepted layer %d", job.layer);
  FUZZ_CHECK(job.hidden == spec().hidden_size, "accepted hidden %u", job.hidden);
  for (const auto& a : job.assignments) {
    FUZZ_CHECK(a.token >= 0 && static_cast<uint32_t>(a.token) < job.num_tokens, "accepted token %d of %u", a.token,
               job.num_tokens);
    FUZZ_CHECK(a.expert >= 0 && a.expert < experts, "accepted expert %d of %d", a.expert, experts);
  }
  auto request = job.frame.envelope().getForwardRequest();
  auto values = moe::unpack_tensor(request.getTokens(), job.dtype, size_t{job.num_tokens} * job.hidden, "tokens");
  FUZZ_CHECK(values.size() == size_t{job.num_tokens} * job.hidden, "unpacked %zu values", values.size());
  return 0;
}
