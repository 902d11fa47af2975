// ClusterClient: model/placement fetch, the forward call's rounds, failure handling (see cluster_client.h).
#include "runtime/client/cluster_client.h"

#include <algorithm>
#include <set>
#include <stdexcept>
#include <thread>

#include <capnp/message.h>

#include "runtime/client/forward_messages.h"
#include "runtime/client/shard_dispatch.h"
#include "runtime/net/net_error.h"
#include "runtime/routing/combine.h"
#include "runtime/routing/dispatch_plan.h"
#include "runtime/wire/envelope_util.h"
#include "runtime/wire/wire_error.h"

namespace moe {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

milliseconds remaining_ms(Clock::time_point deadline) {
  return std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
}

const char* net_kind_label(NetError::Kind kind) {
  switch (kind) {
    case NetError::Kind::BadAddress: return "badAddress";
    case NetError::Kind::ListenFailed: return "listenFailed";
    case NetError::Kind::ConnectFailed: return "connectFailed";
    case NetError::Kind::ConnectTimeout: return "connectTimeout";
    case NetError::Kind::ConnectionClosed: return "connectionClosed";
    case NetError::Kind::DeadlineExceeded: return "timeout";
  }
  return "net";
}

// How one failed shard is handled.
struct Failure {
  bool retryable = false;
  bool avoid_worker = false;  // prefer another replica of its experts on the retry
  std::string status;         // metrics label
  std::string text;
};

Failure classify(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const RemoteError& e) {
    const auto code = e.code();
    Failure f;
    f.status = error_code_name(code);
    f.text = f.status + ": " + e.remote_message();
    f.retryable = code == wire::ErrorCode::STALE_EPOCH || code == wire::ErrorCode::EXPERT_NOT_HOSTED ||
                  code == wire::ErrorCode::NOT_READY || code == wire::ErrorCode::OVERLOADED ||
                  code == wire::ErrorCode::DEADLINE_EXCEEDED;
    f.avoid_worker = code == wire::ErrorCode::EXPERT_NOT_HOSTED || code == wire::ErrorCode::OVERLOADED ||
                     code == wire::ErrorCode::DEADLINE_EXCEEDED;
    return f;
  } catch (const NetError& e) {
    if (e.kind() == NetError::Kind::BadAddress) return {false, false, net_kind_label(e.kind()), e.what()};
    return {true, true, net_kind_label(e.kind()), e.what()};
  } catch (const std::exception& e) {
    return {false, false, "invalidReply", e.what()};
  }
}

}  // namespace

ClusterClient::ClusterClient(const std::string& coordinator, ClusterClientOptions options)
    : coordinator_(coordinator),
      options_(options),
      pool_(std::max(1u, options.io_threads)),
      links_(pool_, options.connect_timeout, options.frame_limits),
      metrics_(options.registry),
      placement_(std::make_shared<ClientPlacement>()) {
  const auto deadline = Clock::now() + options_.deadline;
  auto backoff = options_.backoff_initial;
  for (int attempt = 1;; ++attempt) {
    capnp::MallocMessageBuilder request;
    request.initRoot<wire::Envelope>().setGetModel();
    try {
      Frame reply = call_coordinator(request, wire::Envelope::MODEL_INFO, options_.deadline);
      model_ = decode_model_info(reply.envelope().getModelInfo());
      break;
    } catch (const RemoteError& e) {
      if (e.code() != wire::ErrorCode::NOT_READY)
        throw ClusterError("coordinator " + coordinator_ + " refused getModel: " + error_code_name(e.code()) + ": " +
                           e.remote_message());
      if (Clock::now() + backoff >= deadline)
        throw ClusterError("coordinator " + coordinator_ + " still not ready to give the model after " +
                           std::to_string(attempt) + " attempts: " + e.remote_message());
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, options_.backoff_max);
  }
  refresh_placement();
}

ClusterClient::~ClusterClient() {
  links_.close_all();
  pool_.stop();
}

Frame ClusterClient::call_coordinator(capnp::MallocMessageBuilder& request, wire::Envelope::Which expected,
                                      milliseconds timeout) {
  auto connection = links_.get(coordinator_);
  return call_peer(*connection, request, timeout, expected);
}

std::shared_ptr<const ClientPlacement> ClusterClient::placement() const {
  std::lock_guard lock(placement_mutex_);
  return placement_;
}

bool ClusterClient::refresh_placement() {
  std::shared_ptr<const ClientPlacement> fresh;
  try {
    capnp::MallocMessageBuilder request;
    request.initRoot<wire::Envelope>().setGetPlacement();
    Frame reply = call_coordinator(request, wire::Envelope::PLACEMENT, std::min(options_.request_timeout, options_.deadline));
    fresh = std::make_shared<ClientPlacement>(reply.envelope().getPlacement());
  } catch (const NetError&) {
    return false;  // coordinator unreachable: keep serving the cached placement
  } catch (const RemoteError&) {
    return false;  // notReady and the like
  } catch (const WireError&) {
    return false;
  }
  std::lock_guard lock(placement_mutex_);
  placement_ = std::move(fresh);
  return true;
}

void ClusterClient::refresh_after_failure(uint64_t planned_epoch) {
  std::lock_guard lock(refresh_mutex_);
  if (placement()->epoch() > planned_epoch) return;  // another caller already moved on
  refresh_placement();
}

Matrix ClusterClient::forward(int32_t layer, const Matrix& x, RoutingResult* routing_out) {
  const auto start = Clock::now();
  const Router& router = model_.router(layer);
  if (x.cols != model_.spec.hidden_size) {
    throw std::invalid_argument("hidden_states has hidden size " + std::to_string(x.cols) + ", the model expects " +
                                std::to_string(model_.spec.hidden_size));
  }
  RoutingResult routing = router.route(x);
  try {
    Matrix out = run_forward(layer, x, routing);
    metrics_.record_call(CallOutcome::Ok, x.rows, Clock::now() - start);
    if (routing_out) *routing_out = std::move(routing);
    return out;
  } catch (const ClusterDeadlineError&) {
    metrics_.record_call(CallOutcome::DeadlineExceeded, x.rows, Clock::now() - start);
    throw;
  } catch (...) {
    metrics_.record_call(CallOutcome::Error, x.rows, Clock::now() - start);
    throw;
  }
}

Matrix ClusterClient::run_forward(int32_t layer, const Matrix& x, RoutingResult& routing) {
  const auto deadline = Clock::now() + options_.deadline;
  const std::vector<TokenAssignment> assignments = make_assignments(routing, model_.spec);
  Matrix out(x.rows, x.cols);
  std::vector<size_t> pending(assignments.size());
  for (size_t i = 0; i < pending.size(); ++i) pending[i] = i;
  std::set<uint32_t> avoid;
  std::string last_error;
  auto backoff = options_.backoff_initial;
  const std::string what = "forward of layer " + std::to_string(layer) + " (" + std::to_string(x.rows) + " tokens)";

  for (int attempts = 0; !pending.empty();) {
    const milliseconds left = remaining_ms(deadline);
    if (left.count() < 1) {
      throw ClusterDeadlineError(what + ": deadline exceeded after " + std::to_string(attempts) + " attempts (" +
                                 std::to_string(options_.deadline.count()) + " ms): " + last_error);
    }
    ++attempts;
    const std::shared_ptr<const ClientPlacement> view = placement();

    // Plan the pending pairs; pairs whose expert has no replica wait for a newer placement.
    std::vector<size_t> next;
    std::vector<TokenAssignment> subset;
    std::vector<int32_t> worker_of_subset;
    std::map<int32_t, std::vector<size_t>> original_of;  // worker -> original indices, in shard order
    std::set<int32_t> unplaced;                          // experts without a replica in this view
    for (size_t i : pending) {
      const TokenAssignment& a = assignments[i];
      const int64_t w = view->choose_worker(layer, a.expert, a.token, avoid);
      if (w < 0) {
        next.push_back(i);
        unplaced.insert(a.expert);
        continue;
      }
      subset.push_back(a);
      worker_of_subset.push_back(static_cast<int32_t>(w));
      original_of[static_cast<int32_t>(w)].push_back(i);
    }
    std::map<int32_t, WorkerShard> plan =
        plan_by_worker(subset, [&](size_t i, const TokenAssignment&) { return worker_of_subset[i]; });

    ShardRound round{view.get(), layer, options_.wire_dtype, &x, std::min(options_.request_timeout, left),
                     options_.cluster_token};
    std::vector<ShardOutcome> outcomes = send_shards(links_, round, std::move(plan));

    size_t failed_shards = 0;
    for (ShardOutcome& o : outcomes) {
      std::exception_ptr error = o.error;
      if (!error) {
        try {
          // Kept by this thread between calls: a fresh multi-megabyte vector page-faults per 4 KiB.
          thread_local std::vector<float> partial;
          partial.resize(o.shard.tokens.size() * static_cast<size_t>(x.cols));
          decode_forward_reply_into(o.reply, o.shard.tokens.size(), x.cols, std::span<float>(partial));
          combine_partial(o.shard.tokens, partial, out);
          metrics_.record_request("ok");
          metrics_.record_shard_done(layer, o.worker, o.shard,
                                     shard_payload_bytes(o.shard, x.cols, options_.wire_dtype));
          continue;
        } catch (...) {
          error = std::current_exception();
        }
      }
      Failure f = classify(error);
      metrics_.record_request(f.status);
      const std::string where = "worker " + std::to_string(o.worker) + " (" + o.address + ")";
      if (!f.retryable) throw ClusterError(what + ": " + where + " failed: " + f.text);
      last_error = where + ": " + f.text;
      if (f.avoid_worker) avoid.insert(o.worker);
      const auto& originals = original_of[static_cast<int32_t>(o.worker)];
      next.insert(next.end(), originals.begin(), originals.end());
      ++failed_shards;
    }
    if (!unplaced.empty()) {  // the root cause when there is one: name every expert without a replica
      std::string names;
      for (int32_t e : unplaced) {
        names += (names.empty() ? "(" : ", (") + std::to_string(layer) + ", " + std::to_string(e) + ")";
      }
      last_error = (unplaced.size() == 1 ? "expert " + names + " has" : "experts " + names + " have") +
                   " no replica in placement epoch " + std::to_string(view->epoch()) +
                   " (unavailable until the cluster has room for them)";
    }
    if (next.empty()) break;
    if (failed_shards) metrics_.record_retry(failed_shards);
    pending = std::move(next);

    refresh_after_failure(view->epoch());
    if (placement()->epoch() == view->epoch()) {
      // Nothing new to plan against: wait a little (never past the deadline) before trying again.
      const milliseconds wait = std::min(backoff, std::max(milliseconds(0), remaining_ms(deadline)));
      std::this_thread::sleep_for(wait);
      backoff = std::min(backoff * 2, options_.backoff_max);
    }
  }
  return out;
}

}  // namespace moe
