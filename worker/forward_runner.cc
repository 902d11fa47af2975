// Batched expert compute and replies (see forward_runner.h).
#include "worker/forward_runner.h"

#include <capnp/message.h>

#include <map>
#include <memory>
#include <string>

#include "runtime/wire/blob_message.h"
#include "runtime/wire/tensor_pack.h"
#include "worker/error_reply.h"

namespace moe {

namespace {
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start, Clock::time_point now) {
  return std::chrono::duration<double>(now - start).count();
}

uint64_t micros_between(Clock::time_point a, Clock::time_point b) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(b - a).count());
}
}  // namespace

void ForwardRunner::run(ForwardBatcher::Batch& batch) {
  const auto start = Clock::now();
  // Rows of the batch matrix where each surviving job starts.
  std::vector<ForwardJob*> jobs;
  std::vector<int64_t> row_offset;
  // Both buffers are kept by this compute thread from batch to batch: fresh multi-megabyte vectors cost a
  // page fault per 4 KiB on every call.
  thread_local std::vector<float> x;
  x.clear();
  int64_t rows = 0;
  for (auto& job_ptr : batch) {
    ForwardJob& job = *job_ptr;
    metrics_.queue_seconds.Observe(seconds_since(job.received, start));
    if (job.deadline_ms > 0 && start - job.received > std::chrono::milliseconds(job.deadline_ms)) {
      send_error_reply(job.responder,
                       ServiceError(wire::ErrorCode::DEADLINE_EXCEEDED,
                                    "forwardRequest waited " + std::to_string(micros_between(job.received, start) / 1000) +
                                        " ms in the queue, over its deadline of " + std::to_string(job.deadline_ms) + " ms",
                                    current_epoch_()),
                       metrics_, "forwardRequest");
      continue;
    }
    const size_t elements = size_t{job.num_tokens} * job.hidden;
    x.resize(static_cast<size_t>(rows) * job.hidden + elements);
    try {
      unpack_tensor(job.frame.envelope().getForwardRequest().getTokens(), job.dtype,
                    std::span<float>(x.data() + rows * job.hidden, elements), "forwardRequest.tokens");
    } catch (const std::exception& e) {
      x.resize(static_cast<size_t>(rows) * job.hidden);
      send_error_reply(job.responder, ServiceError(wire::ErrorCode::BAD_REQUEST, e.what(), current_epoch_()), metrics_,
                       "forwardRequest");
      continue;
    }
    jobs.push_back(&job);
    row_offset.push_back(rows);
    rows += job.num_tokens;
  }
  if (jobs.empty()) return;

  const int32_t layer = jobs.front()->layer;
  const int32_t backend_layer = jobs.front()->backend_layer;
  const int64_t hidden = jobs.front()->hidden;
  // Default requests: one forward over the batch, per-token sums. Deterministic ones: one forward_rows,
  // a row per pair (pair_offset[j]: where job j's rows start), computed by per-row invariant kernels so
  // the batch they share does not change their bits.
  std::vector<TokenAssignment> assignments, pairs;
  std::vector<int64_t> pair_offset(jobs.size(), 0);
  for (size_t j = 0; j < jobs.size(); ++j) {
    std::vector<TokenAssignment>& list = jobs[j]->deterministic ? pairs : assignments;
    pair_offset[j] = static_cast<int64_t>(pairs.size());
    for (const TokenAssignment& a : jobs[j]->assignments) {
      list.push_back({static_cast<int32_t>(a.token + row_offset[j]), a.expert, a.weight});
    }
  }
  thread_local std::vector<float> out;
  thread_local std::vector<float> pair_rows;
  // ExpertBackend::forward overwrites every row of `out` (zero where no pair names it): zero it here only
  // when no forward runs (default requests with no pairs still reply zero rows).
  if (rows > 0 && !assignments.empty()) {
    out.resize(static_cast<size_t>(rows * hidden));
  } else {
    out.assign(static_cast<size_t>(rows * hidden), 0.f);
  }
  pair_rows.resize(pairs.size() * static_cast<size_t>(hidden));
  const auto compute_start = Clock::now();
  try {
    if (rows > 0 && !assignments.empty()) {
      store_.backend().forward(backend_layer, x.data(), rows, hidden, assignments, out.data());
    }
    if (rows > 0 && !pairs.empty()) {
      store_.backend().forward_rows(backend_layer, x.data(), rows, hidden, pairs, pair_rows.data());
    }
  } catch (const std::exception&) {
    // One of the requests names an expert that went away (or the backend refused it): isolate it.
    for (size_t j = 0; j < jobs.size(); ++j) {
      std::vector<float> x_alone(x.begin() + row_offset[j] * hidden,
                                 x.begin() + (row_offset[j] + jobs[j]->num_tokens) * hidden);
      run_alone(*jobs[j], x_alone);
    }
    return;
  }
  const auto compute_end = Clock::now();
  metrics_.batch_tokens.Observe(static_cast<double>(rows));
  const uint64_t compute_micros = micros_between(compute_start, compute_end);
  // Counted before replying, so a client that got its reply sees its tokens in the metrics.
  count_tokens(layer, std::vector<const ForwardJob*>(jobs.begin(), jobs.end()));
  for (size_t j = 0; j < jobs.size(); ++j) {
    const float* result = jobs[j]->deterministic ? pair_rows.data() + pair_offset[j] * hidden
                                                 : out.data() + row_offset[j] * hidden;
    reply_output(*jobs[j], result, compute_micros);
  }
}

void ForwardRunner::run_alone(ForwardJob& job, const std::vector<float>& x) {
  for (const TokenAssignment& a : job.assignments) {
    if (!store_.has({job.layer, a.expert}, job.weight_version)) {
      send_error_reply(job.responder,
                       ServiceError(wire::ErrorCode::EXPERT_NOT_HOSTED,
                                    "expert " + std::to_string(a.expert) + " of layer " + std::to_string(job.layer) +
                                        " in weight version " + std::to_string(job.weight_version) +
                                        " is not loaded on this worker (released while the request waited)",
                                    current_epoch_()),
                       metrics_, "forwardRequest");
      return;
    }
  }
  std::vector<float> out(job.deterministic ? job.assignments.size() * job.hidden : x.size(), 0.f);
  const auto compute_start = Clock::now();
  try {
    if (job.num_tokens > 0 && !job.assignments.empty()) {
      if (job.deterministic)
        store_.backend().forward_rows(job.backend_layer, x.data(), job.num_tokens, job.hidden, job.assignments, out.data());
      else
        store_.backend().forward(job.backend_layer, x.data(), job.num_tokens, job.hidden, job.assignments, out.data());
    }
  } catch (const std::exception& e) {
    send_error_reply(job.responder,
                     ServiceError(wire::ErrorCode::INTERNAL, std::string("expert compute failed: ") + e.what(),
                                  current_epoch_()),
                     metrics_, "forwardRequest");
    return;
  }
  metrics_.batch_tokens.Observe(static_cast<double>(job.num_tokens));
  count_tokens(job.layer, {&job});
  reply_output(job, out.data(), micros_between(compute_start, Clock::now()));
}

void ForwardRunner::reply_output(ForwardJob& job, const float* out, uint64_t compute_micros) {
  // A deterministic request gets a row per pair, in its pairs' order.
  const uint32_t rows = job.deterministic ? static_cast<uint32_t>(job.assignments.size()) : job.num_tokens;
  const size_t elements = size_t{rows} * job.hidden;
  // The output goes into the builder's own blob storage (not zeroed first, sent as its own segment after
  // the envelope's few words); the connection writes the segments as they are (no flat copy).
  const size_t bytes = packed_tensor_bytes(job.dtype, elements);
  auto message = std::make_unique<BlobMessageBuilder>(64u);
  auto reply = message->initRoot<wire::Envelope>().initForwardReply();
  reply.setNumTokens(rows);
  reply.setHidden(job.hidden);
  reply.setDtype(job.dtype);
  reply.setComputeMicros(compute_micros);
  reply.setWeightVersion(job.weight_version);
  auto [orphan, output] = message->external_data(bytes);
  pack_tensor(std::span<const float>(out, elements), job.dtype, output);
  reply.adoptOutput(kj::mv(orphan));
  metrics_.forward_seconds.Observe(seconds_since(job.received, Clock::now()));
  job.responder.reply(std::move(message));
}

void ForwardRunner::count_tokens(int32_t layer, const std::vector<const ForwardJob*>& jobs) {
  std::map<ExpertKey, uint64_t> counts;
  for (const ForwardJob* job : jobs) {
    for (const TokenAssignment& a : job->assignments) ++counts[{layer, a.expert}];
  }
  load_.add(counts);
  for (const auto& [key, count] : counts) metrics_.add_expert_tokens(key.layer, key.expert, count);
}

}  // namespace moe
