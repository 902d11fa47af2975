// The worker service: request routing, the placement change protocol, and the coordinator Peer
// (see worker_service.h).
#include "worker/worker_service.h"

#include "runtime/net/data_link.h"

#include <capnp/message.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/ip/host_name.hpp>

#include "runtime/model/layer_source_factory.h"
#include "runtime/net/address.h"
#include "runtime/placement/placement_error.h"
#include "runtime/placement/placement_wire.h"
#include "runtime/wire/cluster_auth.h"
#include "runtime/wire/envelope_util.h"
#include "runtime/wire/text_limits.h"
#include "worker/backend_factory.h"
#include "worker/error_reply.h"
#include "worker/expert_fetch.h"
#include "worker/expert_serve.h"
#include "worker/forward_validation.h"
#include "worker/weight_version.h"
#include "worker/worker_flags.h"
#include "worker/worker_log.h"

namespace moe {

namespace {
std::set<ExpertKey> expert_set(capnp::List<wire::ExpertRef>::Reader list) {
  std::set<ExpertKey> experts;
  for (auto ref : list) experts.insert({ref.getLayer(), ref.getExpert()});
  return experts;
}

bool is_wildcard(const std::string& host) { return host.empty() || host == "0.0.0.0" || host == "::"; }

std::string mib(size_t bytes) { return std::to_string(bytes / (1024 * 1024)) + " MiB"; }

int default_batch_threads(const std::string& backend) { return backend == "cuda" ? 1 : 2; }


// prepare.sources as expert -> peer addresses, in the coordinator's order.
std::map<ExpertKey, std::vector<std::string>> source_map(capnp::List<wire::ExpertSource>::Reader list) {
  std::map<ExpertKey, std::vector<std::string>> sources;
  for (auto source : list) {
    auto& addresses = sources[{source.getExpert().getLayer(), source.getExpert().getExpert()}];
    for (auto address : source.getAddresses()) {
      if (address.size() > kMaxAddressBytes) {
        throw ServiceError(wire::ErrorCode::BAD_REQUEST, "prepare: a source address of " + std::to_string(address.size()) +
                                                             " bytes, at most " + std::to_string(kMaxAddressBytes));
      }
      addresses.emplace_back(address.cStr());
    }
  }
  return sources;
}
}  // namespace

WorkerService::WorkerService(WorkerOptions options)
    : options_(std::move(options)),
      store_(make_worker_backend(options_.backend, options_.threads, options_.cuda_path), options_.no_shared_storage),
      control_key_(new_control_key()) {
  check_worker_options(options_);
  resolve_cluster_token(options_.cluster_token, options_.cluster_token_file);
  options_.cluster_token_file.clear();
  HostPort listen = parse_host_port(options_.listen);
  listen_host_ = listen.host;
  listen_port_ = listen.port;
  name_ = options_.name.empty() ? boost::asio::ip::host_name() : options_.name;
  memory_bytes_ = options_.memory_bytes > 0 ? options_.memory_bytes : default_memory_bytes(options_.backend);

  std::shared_ptr<TlsContext> tls = make_tls(options_.transport);
  // /metrics: the cluster token and TLS as on every other port, unless --metrics-open.
  metrics_endpoint_ = std::make_unique<MetricsEndpoint>(is_wildcard(listen_host_) ? "0.0.0.0" : listen_host_,
                                                        options_.metrics_port, "worker", store_.backend().name(),
                                                        options_.metrics_open ? std::string() : options_.cluster_token,
                                                        options_.metrics_open ? nullptr : shared_native(tls));
  metrics_ = std::make_unique<WorkerMetrics>(metrics_endpoint_->registry());
  runner_ = std::make_unique<ForwardRunner>(store_, *metrics_, load_window_, [this] { return current_epoch(); });
  BatcherOptions batching;
  batching.threads = options_.batch_threads > 0 ? options_.batch_threads : default_batch_threads(options_.backend);
  batching.max_queue = options_.max_queue;
  batching.batch_wait = std::chrono::microseconds(options_.batch_wait_us);
  batching.max_batch_tokens = options_.max_batch_tokens;
  metrics_->max_queue.Set(options_.max_queue);
  batcher_ = std::make_unique<ForwardBatcher>(
      batching, [this](ForwardBatcher::Batch& batch) { runner_->run(batch); },
      [gauge = &metrics_->forwards_in_flight](size_t n) { gauge->Set(static_cast<double>(n)); });
  control_ = std::make_unique<SerialExecutor>();
  io_ = std::make_unique<IoPool>(2, tls);
  CoordinatorLinkOptions link;
  link.coordinator = options_.coordinator;
  link.cluster_token = options_.cluster_token;
  link.connect_timeout = std::chrono::milliseconds(options_.connect_timeout_ms);
  link.retry_min = std::chrono::milliseconds(options_.retry_min_ms);
  link.retry_max = std::chrono::milliseconds(options_.retry_max_ms);
  link.request_timeout = std::chrono::milliseconds(options_.request_timeout_ms);
  CoordinatorLink::Peer& peer = *this;
  link_ = std::make_unique<CoordinatorLink>(link, io_->context(), peer, load_window_);
}

WorkerService::~WorkerService() { stop(); }

void WorkerService::start() {
  if (started_) throw std::logic_error("WorkerService::start called twice");
  started_ = true;
  FrameLimits limits;
  limits.max_message_bytes = options_.max_frame_bytes;
  server_ = std::make_unique<Server>(io_->context(), listen_host_, listen_port_,
                                     [this](Frame request, Responder responder) {
                                       handle(std::move(request), std::move(responder));
                                     },
                                     server_options(options_.transport, limits));
  std::string advertised_host = is_wildcard(listen_host_) ? boost::asio::ip::host_name() : listen_host_;
  address_ = HostPort{advertised_host, server_->port()}.to_string();
  if (parse_data_transport(options_.transport.data_transport) == DataTransport::Ucx) {
    ucx_listener_ = std::make_unique<UcxListener>(io_->context(), *server_, listen_host_, options_.transport.ucx_port);
    ucx_address_ = HostPort{advertised_host, ucx_listener_->port()}.to_string();
    worker_log("forward requests also over UCX at " + ucx_address_);
  }
  worker_log("listening on " + server_->address() + " as " + address_ + (server_->tls() ? " with mutual TLS" : "") +
             " (backend " + store_.backend().name() +
             ", metrics port " + std::to_string(metrics_endpoint_->port()) +
             (metrics_endpoint_->tls() ? " (https)" : "") + ", coordinator " + options_.coordinator + ")");
  link_->start();
}

void WorkerService::stop() {
  if (stopping_.exchange(true)) return;
  link_->stop();
  control_->stop();
  batcher_->stop();  // runs what is queued; replies go out through the io threads
  ucx_listener_.reset();  // no new UCX connections; the Server closes those it adopted
  if (server_) server_->stop();
  io_->stop();
  if (started_) worker_log("stopped");
}

uint64_t WorkerService::current_epoch() const {
  std::lock_guard lock(epoch_mutex_);
  return epochs_.current();
}

uint64_t WorkerService::weight_version() const {
  std::lock_guard lock(epoch_mutex_);
  return weight_version_;
}

std::set<ExpertKey> WorkerService::hosted() const {
  uint64_t version;
  std::map<int32_t, uint64_t> layers;
  {
    std::lock_guard lock(epoch_mutex_);
    version = weight_version_;
    layers = layer_versions_;
  }
  std::set<ExpertKey> out;
  for (const ExpertKey& key : store_.loaded_in(version)) {
    if (!layers.count(key.layer)) out.insert(key);
  }
  std::set<uint64_t> newer;
  for (const auto& [layer, v] : layers) newer.insert(v);
  for (uint64_t v : newer) {
    for (const ExpertKey& key : store_.loaded_in(v)) {
      auto it = layers.find(key.layer);
      if (it != layers.end() && it->second == v) out.insert(key);
    }
  }
  return out;
}

uint64_t WorkerService::oldest_served_epoch() const {
  std::lock_guard lock(epoch_mutex_);
  return epochs_.oldest_served();
}

// ------------------------------------------------------------------------------------------ requests

void WorkerService::check_control_key(wire::Envelope::Reader envelope) const {
  auto key = envelope.getControlKey();
  const std::string_view got(reinterpret_cast<const char*>(key.begin()), key.size());
  if (same_secret(got, control_key_)) return;
  throw ServiceError(wire::ErrorCode::UNAUTHORIZED,
                     message_kind_name(envelope) + (key.size() == 0 ? " without a control key" : " with a wrong control key") +
                         ": only the coordinator this worker registered with may move its epochs",
                     current_epoch(), false);
}

// Every request passes here first: the cluster token (all kinds), then the control key (prepare, commit,
// release), then the dispatch.
void WorkerService::handle(Frame request, Responder responder) {
  const auto kind = request.envelope().which();
  try {
    check_cluster_token(request.envelope(), options_.cluster_token);
    if (stopping_) throw ServiceError(wire::ErrorCode::NOT_READY, "this worker is shutting down", current_epoch());
    switch (kind) {
      case wire::Envelope::FORWARD_REQUEST:
        handle_forward(std::move(request), responder);
        return;
      case wire::Envelope::PREPARE:
        check_control_key(request.envelope());
        post_control(std::move(request), responder, &WorkerService::handle_prepare);
        return;
      case wire::Envelope::COMMIT:
        check_control_key(request.envelope());
        post_control(std::move(request), responder, &WorkerService::handle_commit);
        return;
      case wire::Envelope::RELEASE:
        check_control_key(request.envelope());
        post_control(std::move(request), responder, &WorkerService::handle_release);
        return;
      case wire::Envelope::FETCH_EXPERT:
        handle_fetch(request, responder);
        return;
      case wire::Envelope::GET_MODEL:  // a client whose coordinator is away
        adopted_.reply_model(responder, current_epoch());
        return;
      case wire::Envelope::GET_PLACEMENT:
        adopted_.reply_placement(responder, current_epoch());
        return;
      case wire::Envelope::GET_TRANSPORTS: {  // a client with --transport ucx asks where to connect
        capnp::MallocMessageBuilder message;
        message.initRoot<wire::Envelope>().initTransports().setUcx(ucx_address_);
        responder.reply(message);
        return;
      }
      default:
        throw ServiceError(wire::ErrorCode::BAD_REQUEST,
                           "moe-worker does not serve " + message_kind_name(kind) +
                               " requests (only forwardRequest, prepare, commit, release, fetchExpert, getModel, "
                               "getPlacement, getTransports)",
                           current_epoch());
    }
  } catch (const ServiceError& e) {
    send_error_reply(responder, e, *metrics_, message_kind_name(kind));
  }
}

void WorkerService::post_control(Frame request, Responder responder,
                                 void (WorkerService::*handler)(const Frame&, const Responder&)) {
  auto shared = std::make_shared<Frame>(std::move(request));
  bool posted = control_->post([this, shared, responder, handler] {
    try {
      (this->*handler)(*shared, responder);
    } catch (const ServiceError& e) {
      send_error_reply(responder, e, *metrics_, message_kind_name(shared->envelope().which()));
    } catch (const std::exception& e) {
      send_error_reply(responder, ServiceError(wire::ErrorCode::INTERNAL, e.what(), current_epoch()), *metrics_,
                       message_kind_name(shared->envelope().which()));
    }
  });
  if (!posted) throw ServiceError(wire::ErrorCode::NOT_READY, "this worker is shutting down", current_epoch());
}

void WorkerService::handle_forward(Frame request, const Responder& responder) {
  auto job = std::make_unique<ForwardJob>(std::move(request), responder, ForwardJob::Clock::now());
  auto model = store_.model();
  validate_forward_request(model->spec(), *job);
  uint64_t current, serving;
  {
    std::lock_guard lock(epoch_mutex_);
    epochs_.check_request_epoch(job->epoch);
    current = epochs_.current();
    auto layer = layer_versions_.find(job->layer);
    serving = layer == layer_versions_.end() ? weight_version_ : layer->second;
  }
  // The version the client routed with: every expert of the request is computed in it, or none is.
  const uint64_t asked = job->frame.envelope().getForwardRequest().getWeightVersion();
  job->weight_version = asked != 0 ? asked : serving;
  if (!store_.holds_version(job->weight_version)) {
    std::string held;
    for (uint64_t v : store_.versions()) held += (held.empty() ? "" : ", ") + std::to_string(v);
    throw ServiceError(wire::ErrorCode::STALE_EPOCH,
                       "weight version " + std::to_string(job->weight_version) + " is not held by this worker (it holds " +
                           (held.empty() ? std::string("none") : held) + ", serves " + std::to_string(serving) + ")",
                       current);
  }
  job->backend_layer = backend_key({job->layer, 0}, job->weight_version).layer;
  std::vector<bool> checked(static_cast<size_t>(model->spec().experts_per_layer()), false);
  for (const TokenAssignment& a : job->assignments) {
    if (checked[a.expert]) continue;
    if (!store_.has({job->layer, a.expert}, job->weight_version)) {
      throw ServiceError(wire::ErrorCode::EXPERT_NOT_HOSTED,
                         "expert " + std::to_string(a.expert) + " of layer " + std::to_string(job->layer) +
                             " in weight version " + std::to_string(job->weight_version) +
                             " is not hosted on this worker (request epoch " + std::to_string(job->epoch) +
                             ", current epoch " + std::to_string(current) + ")",
                         current);
    }
    checked[a.expert] = true;
  }
  switch (batcher_->submit(job)) {
    case ForwardBatcher::Submit::Accepted:
      return;
    case ForwardBatcher::Submit::Overloaded:
      throw ServiceError(wire::ErrorCode::OVERLOADED,
                         "worker has " + std::to_string(batcher_->in_flight()) +
                             " forward requests in flight (queued, computing, or replies not yet read by their "
                             "clients), its bound (--max-queue) is " +
                             std::to_string(options_.max_queue),
                         current);
    case ForwardBatcher::Submit::Stopped:
      throw ServiceError(wire::ErrorCode::NOT_READY, "this worker is shutting down", current);
  }
}

void WorkerService::handle_prepare(const Frame& request, const Responder& responder) {
  auto prepare = request.envelope().getPrepare();
  const uint64_t epoch = prepare.getEpoch();
  std::set<ExpertKey> experts = expert_set(prepare.getLoad());
  for (const ExpertKey& key : experts) store_.check_expert(key);
  const auto sources = source_map(prepare.getSources());  // checked before anything changes
  const uint64_t serving = weight_version();
  const uint64_t version = prepare.getWeightVersion() != 0 ? prepare.getWeightVersion() : serving;
  const bool new_version = version != serving;
  if (new_version) {
    check_update_memory(experts, version);
    store_.add_version(version, prepare.getWeightSource().cStr(), serving);
  }
  // A change in the served version(s) loads each expert in the version its layer is served in now (a
  // layer-by-layer update-weights under way serves some layers in the newer version); a prepare of a new
  // version loads them all in it.
  // The prepare lists those layers (Prepare.layerVersions: a worker that just joined knows none yet).
  std::map<uint64_t, std::set<ExpertKey>> by_version;
  {
    std::map<int32_t, uint64_t> layers;
    for (auto lv : prepare.getLayerVersions()) {
      if (lv.getVersion() != 0 && lv.getVersion() != version) layers[lv.getLayer()] = lv.getVersion();
    }
    std::lock_guard lock(epoch_mutex_);
    if (layers.empty() && !new_version) layers = layer_versions_;
    for (const ExpertKey& key : experts) {
      auto layer = layers.find(key.layer);
      by_version[layer == layers.end() ? version : layer->second].insert(key);
    }
  }
  for (const auto& [v, group] : by_version) {
    if (v != version && v != serving) store_.add_version(v, prepare.getLayerSource().cStr(), serving);
  }
  std::set<ExpertKey> keys;
  for (const auto& [v, group] : by_version) {
    for (const ExpertKey& key : group) keys.insert(backend_key(key, v));
  }
  {
    std::lock_guard lock(epoch_mutex_);
    epochs_.prepare(epoch, keys);
  }
  std::vector<ExpertKey> loaded_now;
  for (const auto& [v, group] : by_version) {
    if (options_.no_shared_storage) stream_from_peers(group, sources, v);
    auto now = store_.load(group, v);  // what no peer sent: from the source
    loaded_now.insert(loaded_now.end(), now.begin(), now.end());
  }
  update_gauges();
  const size_t hosted = store_.loaded().size();
  worker_log("prepared epoch " + std::to_string(epoch) + (new_version ? " with weight version " + std::to_string(version) : "") +
             ": " + std::to_string(experts.size()) + " experts asked, " + std::to_string(loaded_now.size()) +
             " loaded now; " + std::to_string(hosted) + " hosted, " + mib(store_.resident_bytes()) + " of weights (peak " +
             std::to_string(peak_bytes_.load()) + " bytes, --memory-bytes " + std::to_string(memory_bytes_) + ")");
  if (hosted > expert_slots()) {
    worker_log("warning: " + std::to_string(hosted) + " experts loaded, over this worker's " +
               std::to_string(expert_slots()) + " slots");
  }

  capnp::MallocMessageBuilder message;
  auto ack = message.initRoot<wire::Envelope>().initPrepareAck();
  ack.setEpoch(epoch);
  auto loaded = ack.initLoaded(static_cast<unsigned>(experts.size()));
  unsigned i = 0;
  for (const ExpertKey& key : experts) {
    loaded[i].setLayer(key.layer);
    loaded[i].setExpert(key.expert);
    ++i;
  }
  ack.setMemoryUsedBytes(store_.resident_bytes());
  responder.reply(message);
}

void WorkerService::check_update_memory(const std::set<ExpertKey>& experts, uint64_t version) const {
  const size_t loaded = store_.loaded().size();
  if (loaded == 0) return;
  const uint64_t resident = store_.resident_bytes();
  const uint64_t per_expert = resident / loaded;
  const uint64_t needed = per_expert * experts.size();
  if (resident + needed <= memory_bytes_) return;
  throw ServiceError(wire::ErrorCode::OVERLOADED,
                     "weight version " + std::to_string(version) + " needs about " + std::to_string(needed) +
                         " bytes for " + std::to_string(experts.size()) + " experts beside the " + std::to_string(resident) +
                         " bytes loaded, over this worker's " + std::to_string(memory_bytes_) +
                         " bytes (--memory-bytes): the old version keeps serving",
                     current_epoch(), false);
}

void WorkerService::handle_fetch(const Frame& request, const Responder& responder) {
  capnp::MallocMessageBuilder message;
  auto fetch = request.envelope().getFetchExpert();
  const uint64_t version = fetch.getWeightVersion() != 0 ? fetch.getWeightVersion() : weight_version();
  fill_expert_chunk(store_, fetch, version, message.initRoot<wire::Envelope>().initExpertChunk(), current_epoch());
  responder.reply(message);
}

void WorkerService::stream_from_peers(const std::set<ExpertKey>& experts,
                                      const std::map<ExpertKey, std::vector<std::string>>& sources, uint64_t version) {
  std::set<ExpertKey> pending;
  for (const ExpertKey& key : experts) {
    if (!store_.has(key, version) && sources.count(key)) pending.insert(key);
  }
  ExpertFetchOptions fetch;
  fetch.weight_version = version;
  fetch.timeout = std::chrono::milliseconds(options_.fetch_timeout_ms);
  fetch.cluster_token = options_.cluster_token;
  const ModelSpec& spec = store_.model()->spec();
  for (size_t attempt = 0; !pending.empty(); ++attempt) {
    std::map<std::string, std::vector<ExpertKey>> by_peer;  // each pending expert's attempt-th source
    for (const ExpertKey& key : pending) {
      const auto& addresses = sources.at(key);
      if (attempt < addresses.size()) by_peer[addresses[attempt]].push_back(key);
    }
    if (by_peer.empty()) break;
    for (const auto& [address, keys] : by_peer) {
      const auto started = std::chrono::steady_clock::now();
      std::shared_ptr<Connection> peer;
      try {
        peer = Connection::connect(io_->context(), address, std::chrono::milliseconds(options_.connect_timeout_ms));
      } catch (const std::exception& e) {
        worker_log("streaming " + std::to_string(keys.size()) + " experts from peer " + address + " failed: " +
                   e.what() + "; trying their next source");
        continue;
      }
      size_t streamed = 0, bytes = 0;
      for (const ExpertKey& key : keys) {  // one expert at a time: a peer lacking one still sends the others
        try {
          ExpertWeights weights = std::move(fetch_experts(*peer, {key}, spec, fetch).at(key));
          for (const WeightMatrixView* m : {&weights.view.gate, &weights.view.up, &weights.view.down}) {
            bytes += static_cast<size_t>(m->rows * m->cols) * dtype_size(m->dtype);
          }
          store_.load_weights(key, version, std::move(weights));
          pending.erase(key);
          ++streamed;
        } catch (const std::exception& e) {
          worker_log("streaming from peer " + address + " failed: " + e.what() + "; trying their next source");
        }
      }
      peer->close();
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
      if (streamed > 0) {
        worker_log("streamed " + std::to_string(streamed) + " experts (" + std::to_string(bytes / 1024) +
                   " KiB) from peer " + address + " in " + std::to_string(ms.count()) + " ms");
      }
    }
  }
  if (!pending.empty()) {
    worker_log("no peer sent " + std::to_string(pending.size()) + " experts; loading them from the model source " +
               "(this node must be able to read it)");
  }
}

void WorkerService::handle_commit(const Frame& request, const Responder& responder) {
  auto placement = request.envelope().getCommit().getPlacement();
  // The same model the coordinator planned with; a commit that breaks its invariants is refused whole.
  PlacementTable table;
  try {
    table = placement_from_wire(placement);
  } catch (const PlacementError& e) {
    throw ServiceError(wire::ErrorCode::BAD_REQUEST, std::string("commit refused: ") + e.what());
  }
  const uint64_t epoch = table.epoch;
  const uint64_t serving = weight_version();
  const uint64_t version = placement.getWeightVersion() != 0 ? placement.getWeightVersion() : std::max<uint64_t>(serving, 1);
  std::optional<uint32_t> self = link_->worker_id();
  if (!self) {  // not registered (yet): find this worker by its address
    for (const auto& worker : table.workers) {
      if (worker.address == address_) self = worker.id;
    }
  }
  std::set<ExpertKey> mine;
  if (self) {
    const std::vector<ExpertKey> hosted = table.experts_on(*self);
    mine.insert(hosted.begin(), hosted.end());
  }
  for (const ExpertKey& key : mine) store_.check_expert(key);
  {
    std::lock_guard lock(epoch_mutex_);
    if (epoch < epochs_.current()) {
      throw ServiceError(wire::ErrorCode::STALE_EPOCH,
                         "commit of epoch " + std::to_string(epoch) + ", but epoch " +
                             std::to_string(epochs_.current()) + " is already committed",
                         epochs_.current());
    }
  }
  // A layer-by-layer update-weights under way: these layers are served in another version.
  std::map<int32_t, uint64_t> layer_versions;
  for (const auto& [layer, layer_version] : table.layer_versions) {  // decoded and checked above (versions >= 1)
    if (layer_version != version) layer_versions[layer] = layer_version;
  }
  auto version_of = [&](int32_t layer) {
    auto it = layer_versions.find(layer);
    return it == layer_versions.end() ? version : it->second;
  };
  // Normally prepare loaded them already; load what is missing (e.g. after a coordinator restart).
  if (version != serving) store_.add_version(version, request.envelope().getCommit().getWeightSource().cStr(), serving);
  std::map<uint64_t, std::set<ExpertKey>> by_version;
  for (const ExpertKey& key : mine) by_version[version_of(key.layer)].insert(key);
  std::vector<ExpertKey> loaded_now;
  for (const auto& [v, experts] : by_version) {
    if (v != version && v != serving) store_.add_version(v, request.envelope().getCommit().getLayerSource().cStr(), serving);
    auto now = store_.load(experts, v);
    loaded_now.insert(loaded_now.end(), now.begin(), now.end());
  }
  std::set<ExpertKey> keys;
  for (const ExpertKey& key : mine) keys.insert(backend_key(key, version_of(key.layer)));
  uint64_t oldest;
  {
    std::lock_guard lock(epoch_mutex_);
    epochs_.commit(epoch, keys);
    oldest = epochs_.oldest_served();
    weight_version_ = version;
    layer_versions_ = layer_versions;
  }
  adopted_.set_placement(placement);
  update_gauges();
  worker_log("committed epoch " + std::to_string(epoch) + (version != serving ? " (weight version " + std::to_string(serving) + " -> " + std::to_string(version) + ")" : "") +
             (layer_versions.empty() ? "" : " (" + std::to_string(layer_versions.size()) + " MoE layers in a newer weight version)") +
             " as worker " + (self ? std::to_string(*self) : std::string("(unknown id)")) + ": " + std::to_string(mine.size()) +
             " experts assigned" + (loaded_now.empty() ? "" : " (" + std::to_string(loaded_now.size()) + " loaded late)") +
             (oldest < epoch ? "; still serving epochs from " + std::to_string(oldest) + " until release" : ""));
  reply_ack(responder, epoch);
}

void WorkerService::handle_release(const Frame& request, const Responder& responder) {
  const uint64_t epoch = request.envelope().getRelease().getEpoch();
  const bool drop_prepared = request.envelope().getRelease().getDropPrepared();
  std::set<ExpertKey> unload;
  uint64_t current;
  {
    std::lock_guard lock(epoch_mutex_);
    unload = epochs_.release(epoch, store_.loaded(), drop_prepared);
    current = epochs_.current();
  }
  store_.unload(unload);
  std::set<uint64_t> keep{weight_version()};
  {
    std::lock_guard lock(epoch_mutex_);
    for (const auto& [layer, v] : layer_versions_) keep.insert(v);
  }
  store_.drop_versions_except(keep);  // a version some kept epoch still needs stays loaded
  update_gauges();
  worker_log("released epoch " + std::to_string(epoch) + (drop_prepared ? " (dropping unfinished prepares)" : "") +
             ": unloaded " + std::to_string(unload.size()) + " experts, " +
             std::to_string(store_.loaded().size()) + " hosted, " + mib(store_.resident_bytes()) + " of weights");
  reply_ack(responder, current);
}

void WorkerService::reply_ack(const Responder& responder, uint64_t epoch) {
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().initAck().setEpoch(epoch);
  responder.reply(message);
}

void WorkerService::update_gauges() {
  metrics_->experts_hosted.Set(static_cast<double>(store_.loaded().size()));
  metrics_->weight_bytes.Set(static_cast<double>(store_.resident_bytes()));
  metrics_->epoch.Set(static_cast<double>(current_epoch()));
  metrics_->weight_version.Set(static_cast<double>(weight_version()));
  {
    std::lock_guard lock(epoch_mutex_);
    metrics_->weight_layers_ahead.Set(static_cast<double>(layer_versions_.size()));
  }
  uint64_t resident = store_.resident_bytes(), peak = peak_bytes_.load();
  while (resident > peak && !peak_bytes_.compare_exchange_weak(peak, resident)) {
  }
  metrics_->weight_bytes_peak.Set(static_cast<double>(peak_bytes_.load()));
}

uint32_t WorkerService::expert_slots() const {
  if (options_.slots > 0) return options_.slots;
  if (!store_.has_model()) return 0;
  const ModelSpec& spec = store_.model()->spec();
  int64_t intermediate = std::max(spec.moe_intermediate_size, spec.has_shared_expert ? spec.shared_intermediate_size : 0);
  uint64_t expert_bytes = 3 * static_cast<uint64_t>(spec.hidden_size) * static_cast<uint64_t>(intermediate) *
                          backend_bytes_per_weight(options_.backend);
  uint64_t slots = expert_bytes > 0 ? memory_bytes_ / expert_bytes : 0;
  return static_cast<uint32_t>(std::clamp<uint64_t>(slots, 1, UINT32_MAX));
}

// ---------------------------------------------------------------------------------- coordinator peer

void WorkerService::adopt_model(wire::ModelInfo::Reader info) {
  check_model_info_text(info, "the coordinator's");
  ModelSpec spec = parse_model_spec(nlohmann::json::parse(info.getSpecJson().cStr()), "coordinator modelInfo.specJson");
  std::string source_text = info.getSource();
  if (source_text.empty()) throw std::runtime_error("the coordinator's modelInfo names no weight source");
  std::shared_ptr<const LayerSource> source = open_layer_source(ModelRef::parse(source_text));
  const ModelSpec& loaded = source->spec();
  if (loaded.hidden_size != spec.hidden_size || loaded.num_experts != spec.num_experts ||
      loaded.experts_per_layer() != spec.experts_per_layer() || loaded.moe_layers != spec.moe_layers ||
      loaded.moe_intermediate_size != spec.moe_intermediate_size) {
    throw std::runtime_error("weight source '" + source_text + "' (hidden " + std::to_string(loaded.hidden_size) +
                             ", " + std::to_string(loaded.experts_per_layer()) + " experts per layer) does not match "
                             "the coordinator's spec (hidden " + std::to_string(spec.hidden_size) + ", " +
                             std::to_string(spec.experts_per_layer()) + " experts per layer)");
  }
  const uint64_t version = info.getWeightVersion() != 0 ? info.getWeightVersion() : 1;
  store_.set_model(std::move(source), source_text, version);
  {
    std::lock_guard lock(epoch_mutex_);
    if (weight_version_ == 0) weight_version_ = version;
  }
  metrics_->weight_version.Set(static_cast<double>(weight_version()));
  adopted_.set_model(info);
  worker_log("model '" + std::string(info.getName().cStr()) + "' from " + source_text + ": " + family_name(spec.family) +
             ", hidden " + std::to_string(spec.hidden_size) + ", " + std::to_string(spec.experts_per_layer()) +
             " experts in each of " + std::to_string(spec.moe_layers.size()) + " MoE layers; " +
             std::to_string(expert_slots()) + " expert slots" +
             (info.getDeterministic() ? "; deterministic mode: clients ask for per-(token, expert) rows, computed by "
                                        "per-row invariant kernels"
                                      : ""));
}

void WorkerService::fill_registration(wire::RegisterWorker::Builder registration) {
  registration.setName(name_);
  registration.setAddress(address_);
  registration.setBackend(store_.backend().name());
  auto capacity = registration.initCapacity();
  capacity.setMemoryBytes(memory_bytes_);
  capacity.setExpertSlots(expert_slots());
  registration.setControlKey(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(control_key_.data()), control_key_.size()));
  registration.setServingEpoch(current_epoch());
  registration.setPreviousId(link_->worker_id().value_or(0));
  registration.setWeightVersion(weight_version());
  registration.setWeightSource(store_.source_ref(weight_version()));
  std::set<ExpertKey> hosted = this->hosted();
  auto list = registration.initHosted(static_cast<unsigned>(hosted.size()));
  unsigned i = 0;
  for (const ExpertKey& key : hosted) {
    list[i].setLayer(key.layer);
    list[i].setExpert(key.expert);
    ++i;
  }
}

void WorkerService::on_registered(wire::RegisterReply::Reader reply) {
  const uint64_t served = current_epoch();
  if (reply.getCurrentEpoch() > served) {
    worker_log("the coordinator is at epoch " + std::to_string(reply.getCurrentEpoch()) + ", this worker serves " +
               std::to_string(served) + ": waiting for its commit");
  }
}

void WorkerService::fill_heartbeat(wire::Heartbeat::Builder heartbeat) {
  heartbeat.setEpoch(current_epoch());
  heartbeat.setMemoryUsedBytes(store_.resident_bytes());
  heartbeat.setWeightVersion(weight_version());
}

void WorkerService::on_heartbeat_reply(wire::HeartbeatReply::Reader reply) {
  // moectl drain emptied this worker and the coordinator released that epoch: stop the way an operator's
  // SIGTERM does (main's sigwait), exit 0.
  if (reply.getDrained() && !drained_.exchange(true)) {
    worker_log("drained by the coordinator: no experts left, shutting down");
    ::kill(::getpid(), SIGTERM);
  }
}

}  // namespace moe

namespace moe {

void WorkerService::on_fatal(const std::string& why) {
  if (failed_.exchange(true)) return;
  worker_log("error: " + why + "; exiting");
  ::kill(::getpid(), SIGTERM);  // main's sigwait stops the service, then exits 1
}

}  // namespace moe
