// ClusterClient: model/placement fetch, the forward call's rounds, failure handling (see cluster_client.h).
#include "runtime/client/cluster_client.h"

#include <algorithm>
#include <set>
#include <stdexcept>
#include <thread>

#include <capnp/message.h>

#include "runtime/client/forward_messages.h"
#include "runtime/client/metadata_fetch.h"
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
    if (e.kind() == NetError::Kind::BadAddress || e.kind() == NetError::Kind::TransportUnavailable) return {false, false, net_kind_label(e.kind()), e.what()};
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

ClusterClient::ClusterClient(const std::string& coordinator, ClusterClientOptions options)
    : ClusterClient(ClusterEndpoints{coordinator, {}}, std::move(options)) {}

ClusterClient::ClusterClient(ClusterEndpoints endpoints, ClusterClientOptions options)
    : endpoints_(std::move(endpoints)),
      options_(options),
      pool_(std::max(1u, options.io_threads), options.tls),
      links_(pool_, options.connect_timeout, options.frame_limits),
      metrics_(options.registry),
      placement_(std::make_shared<ClientPlacement>()) {
  if (parse_data_transport(options.transport) == DataTransport::Ucx) {
    ucx_links_.emplace(pool_, options.connect_timeout, options.frame_limits,
                       DataLinkOptions{DataTransport::Ucx, options.cluster_token});
  }
  if (endpoints_.coordinator.empty() && endpoints_.workers.empty())
    throw std::invalid_argument("ClusterClient needs a coordinator address or a list of workers");
  fetch_model();
  refresh_placement();
}

ClusterClient::~ClusterClient() {
  links_.close_all();
  if (ucx_links_) ucx_links_->close_all();
  pool_.stop();
}

std::vector<std::string> ClusterClient::metadata_peers() const {
  std::vector<std::string> peers;
  auto add = [&](const std::string& address) {
    if (!address.empty() && std::find(peers.begin(), peers.end(), address) == peers.end()) peers.push_back(address);
  };
  add(endpoints_.coordinator);
  for (const std::string& w : endpoints_.workers) add(w);
  for (const auto& [id, worker] : placement()->workers()) {
    if (worker.state != wire::WorkerState::DEAD) add(worker.address);
  }
  return peers;
}

void ClusterClient::fetch_model() {
  const auto deadline = Clock::now() + options_.deadline;
  auto backoff = options_.backoff_initial;
  const auto timeout = std::min(options_.request_timeout, options_.deadline);
  for (int attempt = 1;; ++attempt) {
    MetadataReply got = fetch_metadata(
        links_, metadata_peers(), [](wire::Envelope::Builder e) { e.setGetModel(); }, wire::Envelope::MODEL_INFO,
        timeout, [&](const std::string&, const Frame& reply) -> std::optional<std::string> {
          auto fetched = std::make_shared<const ClusterModel>(decode_model_info(reply.envelope().getModelInfo()));
          std::lock_guard lock(model_mutex_);
          spec_ = fetched->spec;
          model_ = std::move(fetched);
          return std::nullopt;
        },
        options_.cluster_token);
    if (got.reply) return;
    const std::string failures = join_failures(got.failures);
    if (!got.not_ready)
      throw ClusterError("no coordinator or worker gave the model (getModel): " + failures);
    if (Clock::now() + backoff >= deadline)
      throw ClusterError("no coordinator or worker was ready to give the model after " + std::to_string(attempt) +
                         " attempts (" + std::to_string(options_.deadline.count()) + " ms): " + failures);
    std::this_thread::sleep_for(jittered(backoff));
    backoff = std::min(backoff * 2, options_.backoff_max);
  }
}

std::shared_ptr<const ClusterModel> ClusterClient::model() const {
  std::lock_guard lock(model_mutex_);
  return model_;
}

void ClusterClient::refresh_model(int32_t layer, uint64_t version) {
  std::lock_guard refresh(model_refresh_mutex_);
  const uint64_t cached = model()->weight_version;
  if (model()->version_of(layer) >= version) return;  // another caller already fetched it
  fetch_metadata(
      links_, metadata_peers(), [](wire::Envelope::Builder e) { e.setGetModel(); }, wire::Envelope::MODEL_INFO,
      std::min(options_.request_timeout, options_.deadline),
      [&](const std::string& peer, const Frame& reply) -> std::optional<std::string> {
        auto fetched = std::make_shared<const ClusterModel>(decode_model_info(reply.envelope().getModelInfo()));
        // The coordinator's word is final; a worker's model only when it is not older than ours.
        if (peer != endpoints_.coordinator && fetched->weight_version < cached)
          return "weight version " + std::to_string(fetched->weight_version) + " is older than the cached " +
                 std::to_string(cached);
        if (fetched->spec.hidden_size != spec_.hidden_size || fetched->spec.moe_layers != spec_.moe_layers ||
            fetched->spec.experts_per_layer() != spec_.experts_per_layer())
          return "its model has other shapes than the one this client started with";
        std::lock_guard lock(model_mutex_);
        model_ = std::move(fetched);
        return std::nullopt;
      },
      options_.cluster_token);
}

std::shared_ptr<const ClientPlacement> ClusterClient::placement() const {
  std::lock_guard lock(placement_mutex_);
  return placement_;
}

bool ClusterClient::refresh_placement() {
  const uint64_t cached = placement()->epoch();
  std::shared_ptr<const ClientPlacement> fresh;
  MetadataReply got = fetch_metadata(
      links_, metadata_peers(), [](wire::Envelope::Builder e) { e.setGetPlacement(); }, wire::Envelope::PLACEMENT,
      std::min(options_.request_timeout, options_.deadline),
      [&](const std::string& peer, const Frame& reply) -> std::optional<std::string> {
        auto candidate = std::make_shared<ClientPlacement>(reply.envelope().getPlacement());
        // The coordinator's word is final; a worker's placement only when it is not older than ours.
        if (peer != endpoints_.coordinator && candidate->epoch() < cached)
          return "epoch " + std::to_string(candidate->epoch()) + " is older than the cached " + std::to_string(cached);
        fresh = std::move(candidate);
        return std::nullopt;
      },
      options_.cluster_token);
  if (!got.reply) return false;  // keep serving the cached placement
  std::lock_guard lock(placement_mutex_);
  placement_ = std::move(fresh);
  return true;
}

bool ClusterClient::refresh_after_failure(uint64_t planned_epoch) {
  std::lock_guard lock(refresh_mutex_);
  if (placement()->epoch() > planned_epoch) return true;  // another caller already moved on
  return refresh_placement();
}

Matrix ClusterClient::forward(int32_t layer, const Matrix& x, RoutingResult* routing_out) {
  return forward_versioned(layer, x, nullptr, routing_out);
}

Matrix ClusterClient::forward_versioned(int32_t layer, const Matrix& x, uint64_t* weight_version,
                                        RoutingResult* routing_out) {
  const auto start = Clock::now();
  const auto deadline = start + options_.deadline;
  std::shared_ptr<const ClusterModel> m = model();
  m->router(layer);  // throws for a dense or unknown layer
  if (x.cols != m->spec.hidden_size) {
    throw std::invalid_argument("hidden_states has hidden size " + std::to_string(x.cols) + ", the model expects " +
                                std::to_string(m->spec.hidden_size));
  }
  try {
    for (;;) {
      // The placement serves a newer version than the cached routers: fetch its model first (it may still
      // be the old one for a moment; the workers serve that one until its release).
      // Versions are per layer (a layer-by-layer update routes each layer with its own version's router).
      if (const uint64_t serving = placement()->version_of(layer); serving > m->version_of(layer)) {
        refresh_model(layer, serving);
        m = model();
      }
      RoutingResult routing = m->router(layer).route(x, m->deterministic);
      try {
        Matrix out = run_forward(layer, x, routing, *m, deadline);
        metrics_.record_call(CallOutcome::Ok, x.rows, Clock::now() - start);
        if (routing_out) *routing_out = std::move(routing);
        if (weight_version) *weight_version = m->version_of(layer);
        return out;
      } catch (const VersionMoved&) {
        m = model();  // the whole call again, with the version the placement serves now
      }
    }
  } catch (const ClusterDeadlineError&) {
    metrics_.record_call(CallOutcome::DeadlineExceeded, x.rows, Clock::now() - start);
    throw;
  } catch (...) {
    metrics_.record_call(CallOutcome::Error, x.rows, Clock::now() - start);
    throw;
  }
}

// One attempt of a call: the placement it plans on and the pairs it sends, with their workers.
struct ClusterClient::Round {
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

void ClusterClient::run_chunk(Round& r, const std::vector<size_t>& chunk, std::vector<size_t>& failed) {
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
  ShardRound round{r.view.get(), r.layer, options_.wire_dtype, r.x, std::min(options_.request_timeout, left),
                   options_.cluster_token, deterministic, r.weight_version};
  std::vector<ShardOutcome> outcomes = send_shards(data_links(), round, std::move(plan));
  const int64_t hidden = r.x->cols;
  for (ShardOutcome& o : outcomes) {
    std::exception_ptr error = o.error;
    if (!error) {
      try {
        // Kept by this thread between calls: a fresh multi-megabyte vector page-faults per 4 KiB.
        thread_local std::vector<float> partial;
        const size_t reply_rows = deterministic ? o.shard.assignments.size() : o.shard.tokens.size();
        partial.resize(reply_rows * static_cast<size_t>(hidden));
        decode_forward_reply_into(o.reply, reply_rows, hidden, std::span<float>(partial), r.weight_version);
        if (deterministic) {
          // Row i of the reply is the shard's assignment i: back to the call's assignment index.
          const auto& originals = original_of[static_cast<int32_t>(o.worker)];
          for (size_t i = 0; i < reply_rows; ++i)
            std::copy_n(partial.data() + i * hidden, hidden, r.rows->data() + originals[i] * hidden);
        } else {
          combine_partial(o.shard.tokens, partial, *r.out);
        }
        metrics_.record_request("ok");
        metrics_.record_shard_done(r.layer, o.worker, o.shard, shard_payload_bytes(o.shard, hidden, options_.wire_dtype));
        continue;
      } catch (...) {
        error = std::current_exception();
      }
    }
    Failure f = classify(error);
    metrics_.record_request(f.status);
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

Matrix ClusterClient::run_forward(int32_t layer, const Matrix& x, RoutingResult& routing, const ClusterModel& model,
                                  Clock::time_point deadline) {
  const std::vector<TokenAssignment> assignments = make_assignments(routing, model.spec);
  Matrix out(x.rows, x.cols);
  // Deterministic mode: every pair's row kept apart, combined in one fixed order once all are in.
  std::vector<float> rows(model.deterministic ? assignments.size() * static_cast<size_t>(x.cols) : 0);
  std::vector<size_t> pending(assignments.size());
  for (size_t i = 0; i < pending.size(); ++i) pending[i] = i;
  std::set<uint32_t> avoid;
  std::string last_error;
  std::string last_answer;
  std::set<ExpertKey> unplaced;  // experts of pending pairs with no replica in the last placement planned on
  bool fresh = false;            // the cached placement was fetched during this call
  auto backoff = options_.backoff_initial;
  const std::string what = "forward of layer " + std::to_string(layer) + " (" + std::to_string(x.rows) + " tokens)";
  auto unavailable = [&](const std::string& when) {
    return ClusterUnavailableError(what + ": experts " + expert_list(unplaced) + " are unavailable: no replica in " +
                                       "placement epoch " + std::to_string(placement()->epoch()) + " (" + when + ")",
                                   std::vector<ExpertKey>(unplaced.begin(), unplaced.end()));
  };

  for (int attempts = 0; !pending.empty();) {
    const milliseconds left = remaining_ms(deadline);
    if (left.count() < 1) {
      if (!unplaced.empty())
        throw unavailable("deadline of " + std::to_string(options_.deadline.count()) + " ms reached after " +
                          std::to_string(attempts) + " attempts");
      throw ClusterDeadlineError(what + ": deadline exceeded after " + std::to_string(attempts) + " attempts (" +
                                 std::to_string(options_.deadline.count()) + " ms): " + last_error +
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
    r.view = placement();
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
      chunks = split_by_frame_limit(assignments, r.items, r.worker_of_item, x.cols, options_.wire_dtype,
                                    options_.frame_limits.max_message_bytes, options_.cluster_token.size(),
                                    model.deterministic);
    } catch (const std::length_error& e) {
      throw ClusterError(what + ": " + e.what());
    }
    for (const auto& chunk : chunks) run_chunk(r, chunk, next);
    if (next.empty()) break;
    if (r.failed_shards) metrics_.record_retry(r.failed_shards);
    pending = std::move(next);

    fresh = refresh_after_failure(r.view->epoch());
    // The cluster moved to another weight version (update-weights): the pairs still pending cannot be
    // computed in this call's version for long, and those done cannot be mixed with the new one.
    if (placement()->version_of(layer) > model.version_of(layer)) throw VersionMoved{};
    // Nothing new to plan against: wait a little (never past the deadline) before trying again. (Experts
    // still unplaced in a fresh placement end the call at the next attempt: no wait.)
    if (placement()->epoch() == r.view->epoch() && !(fresh && !unplaced.empty())) {
      const milliseconds wait = std::min(backoff, std::max(milliseconds(0), remaining_ms(deadline)));
      std::this_thread::sleep_for(jittered(wait));
      backoff = std::min(backoff * 2, options_.backoff_max);
    }
  }
  if (model.deterministic) combine_rows(assignments, rows, out);
  return out;
}

}  // namespace moe
