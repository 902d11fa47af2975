// One accepted forward request on its way through the batcher: the received frame (its tokens are
// unpacked on the compute thread, not the io thread), the checked request fields, and how to reply.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "kernels/expert_backend.h"
#include "runtime/net/connection.h"
#include "runtime/wire/framing.h"
#include "runtime/wire/moe.capnp.h"

namespace moe {

struct ForwardJob {
  using Clock = std::chrono::steady_clock;

  Frame frame;                               // holds the forwardRequest
  Responder responder;
  Clock::time_point received;
  uint64_t epoch = 0;
  int32_t layer = 0;
  uint32_t num_tokens = 0;
  uint32_t hidden = 0;
  wire::DType dtype = wire::DType::F32;
  uint32_t deadline_ms = 0;                  // 0: none
  std::vector<TokenAssignment> assignments;  // .token indexes this request's rows
  bool deterministic = false;                // reply one row per assignment (ExpertBackend::forward_rows)
  uint64_t weight_version = 0;               // the version it is computed with (worker/weight_version.h)
  int32_t backend_layer = 0;                 // `layer` in the backend's keys for that version

  ForwardJob(Frame f, Responder r, Clock::time_point t) : frame(std::move(f)), responder(std::move(r)), received(t) {}
};

}  // namespace moe
