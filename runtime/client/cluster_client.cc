// ClusterClient: model/placement fetch, and each forward call as a MoeLayer over a ClusterDispatcher,
// started again whole when the weight version moves (see cluster_client.h).
#include "runtime/client/cluster_client.h"

#include <algorithm>
#include <stdexcept>
#include <thread>

#include "runtime/client/metadata_fetch.h"
#include "runtime/engine/moe_layer.h"
#include "runtime/net/backoff.h"
#include "runtime/wire/envelope_util.h"

namespace moe {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The routing front end of a call, with one model version's routers.
MoeLayer moe_layer_of(const ClusterModel& model) {
  return MoeLayer(model.spec, [&model](int32_t layer) -> const Router& { return model.router(layer); },
                  model.deterministic);
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
  for (const auto& worker : placement()->workers()) {
    if (worker.state != WorkerState::Dead) add(worker.address);
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
  moe_layer_of(*m).check(layer, x);  // a dense or unknown layer, a wrong hidden size
  try {
    for (;;) {
      // The placement serves a newer version than the cached routers: fetch its model first (it may still
      // be the old one for a moment; the workers serve that one until its release).
      // Versions are per layer (a layer-by-layer update routes each layer with its own version's router).
      if (const uint64_t serving = placement()->version_of(layer); serving > m->version_of(layer)) {
        refresh_model(layer, serving);
        m = model();
      }
      try {
        ClusterDispatcher dispatcher(dispatch_context(), *m, deadline);
        Matrix out = moe_layer_of(*m).forward(layer, x, dispatcher, routing_out);
        metrics_.record_call(CallOutcome::Ok, x.rows, Clock::now() - start);
        if (weight_version) *weight_version = m->version_of(layer);
        return out;
      } catch (const WeightVersionMoved&) {
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

ClusterDispatchContext ClusterClient::dispatch_context() {
  return ClusterDispatchContext{data_links(), options_, metrics_, [this] { return placement(); },
                                [this](uint64_t planned_epoch) { return refresh_after_failure(planned_epoch); }};
}

}  // namespace moe
