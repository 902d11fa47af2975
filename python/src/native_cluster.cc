// NativeCluster (see native_cluster.h).
#include "python/src/native_cluster.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "runtime/core/dtype.h"
#include "python/src/binding_error.h"
#include "runtime/placement/placement_wire.h"
#include "runtime/client/coordinator_queries.h"
#include "runtime/wire/cluster_auth.h"

namespace py = pybind11;

namespace moe::py_binding {

namespace {

DType parse_dtype(const std::string& name) {
  if (name == "f32") return DType::F32;
  if (name == "bf16") return DType::BF16;
  if (name == "f16") return DType::F16;
  throw BindingError("InvalidArgument", "unsupported dtype '" + name + "' (expected f32, bf16 or f16)");
}

uint16_t f32_to_f16(float f) {
  _Float16 h = static_cast<_Float16>(f);  // round to nearest even
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}


// Raises moe_cluster.NotMoeLayer naming the model's MoE layers.
void require_moe_layer(const ModelSpec& spec, int32_t layer) {
  if (spec.is_moe_layer(layer)) return;
  std::string layers;
  for (int32_t l : spec.moe_layers) layers += (layers.empty() ? "" : ", ") + std::to_string(l);
  throw BindingError("NotMoeLayer", "layer " + std::to_string(layer) + " is not an MoE layer of this " +
                                        family_name(spec.family) + " model (" + std::to_string(spec.num_hidden_layers) +
                                        " layers; MoE layers: " + layers + ")");
}

py::array_t<float> f32_array(const std::vector<float>& values, std::vector<py::ssize_t> shape) {
  py::array_t<float> out(shape);
  std::copy(values.begin(), values.end(), out.mutable_data());
  return out;
}

}  // namespace

NativeCluster::NativeCluster(const std::string& address, const std::vector<std::string>& workers,
                             const std::string& token, const std::string& wire_dtype,
                             std::optional<int64_t> deadline_ms, const std::string& token_file, const TlsFiles& tls)
    : address_(address.empty() && !workers.empty() ? workers.front() : address) {
  if (address.empty() && workers.empty())
    throw BindingError("InvalidArgument", "give the coordinator's HOST:PORT or at least one worker's");
  ClusterClientOptions options;
  if (wire_dtype == "bf16") {
    options.wire_dtype = wire::DType::BF16;
  } else if (wire_dtype == "f32") {
    options.wire_dtype = wire::DType::F32;
  } else {
    throw BindingError("InvalidArgument", "wire_dtype must be \"bf16\" or \"f32\", got \"" + wire_dtype + "\"");
  }
  if (deadline_ms) {
    if (*deadline_ms <= 0)
      throw BindingError("InvalidArgument", "deadline_ms must be > 0, got " + std::to_string(*deadline_ms));
    options.deadline = std::chrono::milliseconds(*deadline_ms);
    options.connect_timeout = std::min(options.connect_timeout, options.deadline);
    options.request_timeout = std::min(options.request_timeout, options.deadline);
  }
  options.cluster_token = token;
  try {
    if (token.empty() && !token_file.empty()) options.cluster_token = read_cluster_token_file(token_file);
    if (!tls.cert.empty() || !tls.key.empty() || !tls.ca.empty()) {
      if (tls.cert.empty() || tls.key.empty() || tls.ca.empty())
        throw std::invalid_argument("TLS needs tls_cert, tls_key and tls_ca together (MOE_TLS_CERT, MOE_TLS_KEY, "
                                    "MOE_TLS_CA), got cert '" + tls.cert + "', key '" + tls.key + "', ca '" + tls.ca + "'");
      options.tls = TlsContext::load(tls);
    }
  } catch (const std::exception& e) {
    throw BindingError("InvalidArgument", e.what());
  }
  py::gil_scoped_release release;
  try {
    client_ = std::make_shared<ClusterClient>(ClusterEndpoints{address, workers}, options);
  } catch (const ClusterError& e) {
    // The constructor reports every peer's answer in one ClusterError: none gave the model.
    const std::string message = e.what();
    if (message.find("unauthorized") != std::string::npos) throw BindingError("Unauthorized", message);
    // A failed handshake on our side names it; with TLS 1.3 the server's refusal of our certificate comes
    // as an alert after the handshake (e.g. "tlsv1 alert unknown ca").
    if (message.find("TLS handshake") != std::string::npos) throw BindingError("TlsRefused", message);
    if (message.find(" alert ") != std::string::npos)
      throw BindingError("TlsRefused", "TLS refused by the peer: it does not accept this client's certificate "
                                       "(tls_cert, from a CA it does not trust?): " + message);
    if (message.find("bad address") != std::string::npos) throw BindingError("InvalidArgument", message);
    throw BindingError("Unreachable", message);
  }
}

std::shared_ptr<ClusterClient> NativeCluster::client() const {
  std::lock_guard lock(mutex_);
  if (!client_) throw BindingError("ClusterError", "the cluster client for " + address_ + " is closed");
  return client_;
}

void NativeCluster::close() {
  std::shared_ptr<ClusterClient> last;
  {
    std::lock_guard lock(mutex_);
    last = std::move(client_);
  }
  py::gil_scoped_release release;
  last.reset();  // joins the client's io threads (after any forward still running holds no reference)
}

bool NativeCluster::closed() const {
  std::lock_guard lock(mutex_);
  return client_ == nullptr;
}

py::dict NativeCluster::model() const {
  auto c = client();
  const std::shared_ptr<const ClusterModel> held = c->model();
  const ClusterModel& m = *held;
  const ModelSpec& s = m.spec;
  py::dict d;
  d["family"] = family_name(s.family);
  d["name"] = m.name;
  d["source"] = m.source;
  d["num_layers"] = s.num_hidden_layers;
  d["moe_layers"] = s.moe_layers;
  d["hidden_size"] = s.hidden_size;
  d["moe_intermediate_size"] = s.moe_intermediate_size;
  d["num_experts"] = s.num_experts;
  d["top_k"] = s.top_k;
  d["norm_topk_prob"] = s.norm_topk_prob;
  d["has_shared_expert"] = s.has_shared_expert;
  d["shared_intermediate_size"] = s.shared_intermediate_size;
  d["n_group"] = s.n_group;
  d["topk_group"] = s.topk_group;
  d["routed_scaling_factor"] = s.routed_scaling_factor;
  d["epoch"] = c->placement()->epoch();
  return d;
}

py::dict NativeCluster::status() const {
  auto c = client();
  Frame reply = [&] {
    py::gil_scoped_release release;
    return query_status(address_, c->options().deadline, c->options().tls, c->options().cluster_token);
  }();
  auto status = reply.envelope().getStatusReply();
  py::dict d;
  d["model"] = std::string(status.getModelName().cStr());
  d["epoch"] = status.getEpoch();
  py::list workers;
  for (auto w : status.getWorkers()) {
    auto info = w.getInfo();
    py::dict wd;
    wd["id"] = info.getId();
    wd["name"] = std::string(w.getName().cStr());
    wd["state"] = worker_state_name(info.getState());
    wd["address"] = std::string(info.getAddress().cStr());
    wd["backend"] = std::string(w.getBackend().cStr());
    wd["experts_hosted"] = w.getHosted().size();
    wd["lease_remaining_ms"] = w.getLeaseRemainingMs();
    workers.append(wd);
  }
  d["workers"] = workers;
  py::dict balance;
  for (auto b : status.getBalance()) balance[py::int_(b.getLayer())] = b.getImbalance();
  d["imbalance"] = balance;
  return d;
}

py::dict NativeCluster::stats() const {
  ClientStats s = client()->stats();
  py::dict d;
  d["calls_ok"] = s.calls_ok;
  d["calls_deadline_exceeded"] = s.calls_deadline_exceeded;
  d["calls_error"] = s.calls_error;
  d["retries"] = s.retries;
  d["tokens"] = s.tokens;
  d["payload_bytes"] = s.payload_bytes;
  py::dict per_worker;
  for (auto& [w, n] : s.tokens_per_worker) per_worker[py::int_(w)] = n;
  d["tokens_per_worker"] = per_worker;
  return d;
}

py::dict NativeCluster::router_weights(int32_t layer) const {
  auto c = client();
  require_moe_layer(c->spec(), layer);
  const std::shared_ptr<const ClusterModel> held = c->model();
  const RouterWeights& w = held->router(layer).weights();
  py::dict d;
  d["gate"] = f32_array(w.gate.data, {w.gate.rows, w.gate.cols});
  if (!w.correction_bias.empty())
    d["correction_bias"] = f32_array(w.correction_bias, {static_cast<py::ssize_t>(w.correction_bias.size())});
  if (!w.shared_gate.empty())
    d["shared_gate"] = f32_array(w.shared_gate, {static_cast<py::ssize_t>(w.shared_gate.size())});
  return d;
}

py::object NativeCluster::forward(int32_t layer, uintptr_t src, const std::string& dtype_name_, int64_t rows,
                                  int64_t hidden, uintptr_t dst) {
  auto c = client();
  const ModelSpec& spec = c->spec();
  require_moe_layer(spec, layer);
  if (hidden != spec.hidden_size)
    throw BindingError("InvalidArgument", "hidden states end in " + std::to_string(hidden) +
                                              " but the cluster's model has hidden size " +
                                              std::to_string(spec.hidden_size));
  if (rows < 0) throw BindingError("InvalidArgument", "negative row count " + std::to_string(rows));
  const DType dtype = parse_dtype(dtype_name_);
  const size_t n = static_cast<size_t>(rows * hidden);

  auto result = std::make_unique<Matrix>();
  {
    py::gil_scoped_release release;
    Matrix x(rows, hidden);
    if (n > 0) convert_to_f32(dtype, reinterpret_cast<const void*>(src), x.data.data(), n);
    *result = rows == 0 ? Matrix(0, hidden) : c->forward(layer, x);
    if (dtype != DType::F32) {
      auto* out = reinterpret_cast<uint16_t*>(dst);
      const float* y = result->data.data();
      if (dtype == DType::BF16) {
        for (size_t i = 0; i < n; ++i) out[i] = f32_to_bf16(y[i]);
      } else {
        for (size_t i = 0; i < n; ++i) out[i] = f32_to_f16(y[i]);
      }
    }
  }
  if (dtype != DType::F32) return py::none();
  Matrix* owned = result.release();
  py::capsule owner(owned, [](void* p) { delete static_cast<Matrix*>(p); });
  return py::array_t<float>({owned->rows, owned->cols}, owned->data.data(), owner);
}

}  // namespace moe::py_binding
