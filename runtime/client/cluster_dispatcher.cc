// ClusterDispatcher: one call's assignments on the cluster's workers: plan, split, send, retry, combine
// (see cluster_dispatcher.h).
#include "runtime/client/cluster_dispatcher.h"

#include <algorithm>
#include <map>
#include <thread>

#include "runtime/client/forward_messages.h"
#include "runtime/client/shard_dispatch.h"
#include "runtime/client/shard_split.h"
#include "runtime/net/backoff.h"
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
    case NetError::Kind::TransportUnavailable: return "transportUnavailable";
  }
  return "net";
}

// How one failed shard is handled.
struct Failure {
  bool retryable = false;
  bool avoid_worker = false;  // prefer another replica of its experts on the retry
  std::string status;         // metrics label
  std::string text;
  bool answered = false;      // the peer answered with this error (not a timeout or a broken connection)
};

Failure classify(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const RemoteError& e) {
    const auto code = e.code();
    Failure f;
    f.status = error_code_name(code);
    f.text = f.status + ": " + e.remote_message();
    f.answered = true;
    f.retryable = code == wire::ErrorCode::STALE_EPOCH || code == wire::ErrorCode::EXPERT_NOT_HOSTED ||
                  code == wire::ErrorCode::NOT_READY || code == wire::ErrorCode::OVERLOADED ||
                  code == wire::ErrorCode::DEADLINE_EXCEEDED;
    // staleEpoch too: a replica that serves another epoch range should not take the retry when another
    // replica may (after a refresh the plan is made again anyway).
    f.avoid_worker = code == wire::ErrorCode::EXPERT_NOT_HOSTED || code == wire::ErrorCode::OVERLOADED ||
                     code == wire::ErrorCode::DEADLINE_EXCEEDED || code == wire::ErrorCode::STALE_EPOCH;
    return f;
  } catch (const NetError& e) {
    if (e.kind() == NetError::Kind::BadAddress || e.kind() == NetError::Kind::TransportUnavailable)
      return {false, false, net_kind_label(e.kind()), e.what()};
    return {true, true, net_kind_label(e.kind()), e.what()};
  } catch (const std::exception& e) {
    return {false, false, "invalidReply", e.what()};
  }
}

std::string expert_list(const std::set<ExpertKey>& experts) {
  std::string text;
  for (const ExpertKey& key : experts) {
    text += (text.empty() ? "(" : ", (") + std::to_string(key.layer) + ", " + std::to_string(key.expert) + ")";
  }
  return text;
}

}  // namespace

ClusterDispatcher::ClusterDispatcher(ClusterDispatchContext context, const ClusterModel& model,
                                     Clock::time_point deadline)
    : ctx_(std::move(context)), model_(model), deadline_(deadline) {}

// One attempt of a call: the placement it plans on and the pairs it sends, with their workers.
struct ClusterDispatcher::Round {
  int32_t layer = 0;
  const Matrix* x = nullptr;
  Matrix* out = nullptr;
  std::vector<float>* rows = nullptr;  // deterministic mode: [assignments, hidden], one row per pair
  std::string what;  // "forward of layer L (T tokens)", for errors
  std::shared_ptr<const ClientPlacement> view;
  Clock::time_point deadline;  // of the call: each chunk's requests get at most what is left
  const std::vector<TokenAssignment>* assignments = nullptr;
  std::vector<size_t> items;           // indices into *assignments
  std::vector<int32_t> worker_of_item;
  std::set<uint32_t>* avoid = nullptr;
  std::string* last_error = nullptr;
  std::string* last_answer = nullptr;  // the last error a worker answered with (kept past later timeouts)
  size_t failed_shards = 0;
  uint64_t weight_version = 0;  // the version the call routed with
};

void ClusterDispatcher::run_chunk(Round& r, const std::vector<size_t>& chunk, std::vector<size_t>& failed) {
  const milliseconds left = remaining_ms(r.deadline);
  if (left.count() < 1) {  // an earlier chunk used the call's time up: the caller throws the deadline error
    for (size_t p : chunk) failed.push_back(r.items[p]);
    *r.last_error = "the call's deadline passed before all of its " + std::to_string(r.items.size()) +
                    " pairs were sent";
    return;
  }
  std::vector<TokenAssignment> subset;
  subset.reserve(chunk.size());
  std::map<int32_t, std::vector<size_t>> original_of;  // worker -> original indices, in shard order
  for (size_t p : chunk) {
    subset.push_back((*r.assignments)[r.items[p]]);
    original_of[r.worker_of_item[p]].push_back(r.items[p]);
  }
  std::map<int32_t, WorkerShard> plan =
      plan_by_worker(subset, [&](size_t i, const TokenAssignment&) { return r.worker_of_item[chunk[i]]; });

  const bool deterministic = r.rows != nullptr;
  ShardRound round{r.view.get(), r.layer, ctx_.options.wire_dtype, r.x, std::min(ctx_.options.request_timeout, left),
                   ctx_.options.cluster_token, deterministic, r.weight_version};
  std::vector<ShardOutcome> outcomes = send_shards(ctx_.links, round, std::move(plan));
  const int64_t hidden = r.x->cols;
  for (ShardOutcome& o : outcomes) {
    std::exception_ptr error = o.error;
    if (!error) {
      try {
        if (!deterministic) {
          add_forward_reply(o.reply, o.shard.tokens, *r.out, r.weight_version);  // no unpacked copy
        } else {
          // Kept by this thread between calls: a fresh multi-megabyte vector page-faults per 4 KiB.
          thread_local std::vector<float> partial;
          const size_t reply_rows = o.shard.assignments.size();
          partial.resize(reply_rows * static_cast<size_t>(hidden));
          decode_forward_reply_into(o.reply, reply_rows, hidden, std::span<float>(partial), r.weight_version);
          // Row i of the reply is the shard's assignment i: back to the call's assignment index.
          const auto& originals = original_of[static_cast<int32_t>(o.worker)];
          for (size_t i = 0; i < reply_rows; ++i)
            std::copy_n(partial.data() + i * hidden, hidden, r.rows->data() + originals[i] * hidden);
        }
        ctx_.metrics.record_request("ok");
        ctx_.metrics.record_shard_done(r.layer, o.worker, o.shard, shard_payload_bytes(o.shard, hidden, ctx_.options.wire_dtype));
        continue;
      } catch (...) {
        error = std::current_exception();
      }
    }
    Failure f = classify(error);
    ctx_.metrics.record_request(f.status);
    const std::string where = "worker " + std::to_string(o.worker) + " (" + o.address + ")";
    if (!f.retryable) throw ClusterError(r.what + ": " + where + " failed: " + f.text);
    *r.last_error = where + ": " + f.text;
    if (f.answered) *r.last_answer = *r.last_error;
    if (f.avoid_worker) r.avoid->insert(o.worker);
    const auto& originals = original_of[static_cast<int32_t>(o.worker)];
    failed.insert(failed.end(), originals.begin(), originals.end());
    ++r.failed_shards;
  }
}

Matrix ClusterDispatcher::dispatch(int32_t layer, const Matrix& x, const std::vector<TokenAssignment>& assignments) {
  const ClusterModel& model = model_;
  const Clock::time_point deadline = deadline_;
  Matrix out(x.rows, x.cols);
  // Deterministic mode: every pair's row kept apart, combined in one fixed order once all are in.
  std::vector<float>& rows = rows_;
  rows.assign(model.deterministic ? assignments.size() * static_cast<size_t>(x.cols) : 0, 0.f);
  std::vector<size_t> pending(assignments.size());
  for (size_t i = 0; i < pending.size(); ++i) pending[i] = i;
  std::set<uint32_t>& avoid = avoid_;
  std::string& last_error = last_error_;
  std::string& last_answer = last_answer_;
  std::set<ExpertKey>& unplaced = unplaced_;  // experts of pending pairs with no replica in the last placement planned on
  avoid.clear();
  last_error.clear();
  last_answer.clear();
  unplaced.clear();
  bool fresh = false;            // the cached placement was fetched during this call
  auto backoff = ctx_.options.backoff_initial;
  const std::string what = "forward of layer " + std::to_string(layer) + " (" + std::to_string(x.rows) + " tokens)";
  auto unavailable = [&](const std::string& when) {
    return ClusterUnavailableError(what + ": experts " + expert_list(unplaced) + " are unavailable: no replica in " +
                                       "placement epoch " + std::to_string(ctx_.placement()->epoch()) + " (" + when + ")",
                                   std::vector<ExpertKey>(unplaced.begin(), unplaced.end()));
  };

  for (int attempts = 0; !pending.empty();) {
    const milliseconds left = remaining_ms(deadline);
    if (left.count() < 1) {
      if (!unplaced.empty())
        throw unavailable("deadline of " + std::to_string(ctx_.options.deadline.count()) + " ms reached after " +
                          std::to_string(attempts) + " attempts");
      throw ClusterDeadlineError(what + ": deadline exceeded after " + std::to_string(attempts) + " attempts (" +
                                 std::to_string(ctx_.options.deadline.count()) + " ms): " + last_error +
                                 (last_answer.empty() || last_answer == last_error
                                      ? std::string()
                                      : "; the last error a worker answered: " + last_answer));
    }
    ++attempts;
    Round r;
    r.layer = layer;
    r.x = &x;
    r.out = &out;
    r.rows = model.deterministic ? &rows : nullptr;
    r.what = what;
    r.view = ctx_.placement();
    r.weight_version = model.version_of(layer);
    r.deadline = deadline;
    r.assignments = &assignments;
    r.avoid = &avoid;
    r.last_error = &last_error;
    r.last_answer = &last_answer;

    // Plan the pending pairs; pairs whose expert has no replica wait for a newer placement.
    std::vector<size_t> next;
    unplaced.clear();
    for (size_t i : pending) {
      const TokenAssignment& a = assignments[i];
      const int64_t w = r.view->choose_worker(layer, a.expert, a.token, avoid);
      if (w < 0) {
        next.push_back(i);
        unplaced.insert({layer, a.expert});
        continue;
      }
      r.items.push_back(i);
      r.worker_of_item.push_back(static_cast<int32_t>(w));
    }
    if (!unplaced.empty()) {
      if (fresh && r.view->epoch() >= 1) throw unavailable("after a placement refresh, " + std::to_string(attempts) + " attempts");
      last_error = "experts " + expert_list(unplaced) + " have no replica in placement epoch " +
                   std::to_string(r.view->epoch());
    }
    std::vector<std::vector<size_t>> chunks;
    try {
      chunks = split_by_frame_limit(assignments, r.items, r.worker_of_item, x.cols, ctx_.options.wire_dtype,
                                    ctx_.options.frame_limits.max_message_bytes, ctx_.options.cluster_token.size(),
                                    model.deterministic);
    } catch (const std::length_error& e) {
      throw ClusterError(what + ": " + e.what());
    }
    for (const auto& chunk : chunks) run_chunk(r, chunk, next);
    if (next.empty()) break;
    if (r.failed_shards) ctx_.metrics.record_retry(r.failed_shards);
    pending = std::move(next);

    fresh = ctx_.refresh_after_failure(r.view->epoch());
    // The cluster moved to another weight version (update-weights): the pairs still pending cannot be
    // computed in this call's version for long, and those done cannot be mixed with the new one.
    if (ctx_.placement()->version_of(layer) > model.version_of(layer)) throw WeightVersionMoved{};
    // Nothing new to plan against: wait a little (never past the deadline) before trying again. (Experts
    // still unplaced in a fresh placement end the call at the next attempt: no wait.)
    if (ctx_.placement()->epoch() == r.view->epoch() && !(fresh && !unplaced.empty())) {
      const milliseconds wait = std::min(backoff, std::max(milliseconds(0), remaining_ms(deadline)));
      std::this_thread::sleep_for(jittered(wait));
      backoff = std::min(backoff * 2, ctx_.options.backoff_max);
    }
  }
  if (model.deterministic) combine_rows(assignments, rows, out);
  return out;
}

}  // namespace moe
