// forwardRequest checks (see forward_validation.h).
#include "worker/forward_validation.h"

#include <string>

#include "runtime/wire/tensor_pack.h"
#include "runtime/wire/service_error.h"

namespace moe {

namespace {
[[noreturn]] void bad(const std::string& message) { throw ServiceError(wire::ErrorCode::BAD_REQUEST, message); }
}  // namespace

void validate_forward_request(const ModelSpec& spec, ForwardJob& job) {
  auto request = job.frame.envelope().getForwardRequest();
  job.epoch = request.getEpoch();
  job.layer = request.getLayer();
  job.num_tokens = request.getNumTokens();
  job.hidden = request.getHidden();
  job.deadline_ms = request.getDeadlineMs();
  job.deterministic = request.getDeterministic();

  if (!spec.is_moe_layer(job.layer)) {
    std::string layers;
    for (int32_t l : spec.moe_layers) layers += (layers.empty() ? "" : ",") + std::to_string(l);
    throw ServiceError(wire::ErrorCode::UNKNOWN_LAYER, "forwardRequest.layer " + std::to_string(job.layer) +
                                                           " is not an MoE layer of this model (MoE layers: " +
                                                           layers + ")");
  }
  if (job.hidden != spec.hidden_size) {
    bad("forwardRequest.hidden is " + std::to_string(job.hidden) + ", the model's hidden size is " +
        std::to_string(spec.hidden_size));
  }
  job.dtype = request.getDtype();
  if (job.dtype != wire::DType::F32 && job.dtype != wire::DType::BF16) {
    bad("forwardRequest.dtype " + std::to_string(static_cast<unsigned>(job.dtype)) + " is not f32 or bf16");
  }
  uint64_t expected_bytes = uint64_t{job.num_tokens} * job.hidden * wire_dtype_size(job.dtype);
  uint64_t got_bytes = request.getTokens().size();
  if (got_bytes != expected_bytes) {
    bad("forwardRequest.tokens has " + std::to_string(got_bytes) + " bytes, numTokens " +
        std::to_string(job.num_tokens) + " x hidden " + std::to_string(job.hidden) + " x " +
        wire_dtype_name(job.dtype) + " needs " + std::to_string(expected_bytes));
  }
  auto token_index = request.getTokenIndex();
  auto expert_id = request.getExpertId();
  auto weight = request.getWeight();
  if (token_index.size() != expert_id.size() || token_index.size() != weight.size()) {
    bad("forwardRequest lists differ in length: tokenIndex " + std::to_string(token_index.size()) + ", expertId " +
        std::to_string(expert_id.size()) + ", weight " + std::to_string(weight.size()));
  }
  const int32_t experts = spec.experts_per_layer();
  job.assignments.resize(token_index.size());
  for (unsigned i = 0; i < token_index.size(); ++i) {
    int32_t token = token_index[i];
    int32_t expert = expert_id[i];
    if (token < 0 || static_cast<uint32_t>(token) >= job.num_tokens) {
      bad("forwardRequest.tokenIndex[" + std::to_string(i) + "] is " + std::to_string(token) + ", outside [0, " +
          std::to_string(job.num_tokens) + ")");
    }
    if (expert < 0 || expert >= experts) {
      bad("forwardRequest.expertId[" + std::to_string(i) + "] is " + std::to_string(expert) + ", layer " +
          std::to_string(job.layer) + " has experts 0.." + std::to_string(experts - 1));
    }
    job.assignments[i] = TokenAssignment{token, expert, weight[i]};
  }
}

}  // namespace moe
