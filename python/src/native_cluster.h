// NativeCluster: the object behind moe_cluster.Cluster. It owns one ClusterClient and turns Python's
// buffers (a CPU tensor's or numpy array's memory, f32/bf16/f16, [rows, hidden] row-major) into the
// f32 Matrix the client takes, with the GIL released for the conversion and the whole wait. The only
// copies are the ones the client API needs: input into its f32 Matrix, and (bf16/f16 only) the f32
// result back into the caller's dtype; an f32 result is handed to numpy without a copy.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "runtime/client/cluster_client.h"
#include "runtime/net/tls_context.h"

namespace moe::py_binding {

class NativeCluster {
 public:
  // address: the coordinator ("" for none); workers: workers to ask for the model and placement when
  // the coordinator does not answer. wire_dtype: "bf16" or "f32". deadline_ms bounds the connect, the
  // model fetch and every forward. token_file: read when token is empty. tls: mutual TLS with the node's
  // certificate and key and the cluster CA when any is set (then all three must be).
  NativeCluster(const std::string& address, const std::vector<std::string>& workers, const std::string& token,
                const std::string& wire_dtype, std::optional<int64_t> deadline_ms, const std::string& token_file = "",
                const TlsFiles& tls = {});

  pybind11::dict model() const;
  pybind11::dict status() const;
  pybind11::dict stats() const;
  // The f32 router weights the cluster routes `layer` with: gate [E, hidden], and when the family has
  // them correction_bias [E] (deepseek_v3) and shared_gate [hidden] (qwen2_moe).
  pybind11::dict router_weights(int32_t layer) const;

  // x: `rows * hidden` elements of `dtype` ("f32", "bf16", "f16") at `src`, alive for the call.
  // f32: returns a new numpy array [rows, hidden] (owning the result). bf16/f16: writes the result in
  // that dtype to `dst` (rows * hidden elements) and returns None.
  pybind11::object forward(int32_t layer, uintptr_t src, const std::string& dtype, int64_t rows, int64_t hidden,
                           uintptr_t dst);

  void close();
  bool closed() const;
  const std::string& address() const { return address_; }

 private:
  std::shared_ptr<ClusterClient> client() const;  // throws ClusterError once closed

  std::string address_;
  mutable std::mutex mutex_;
  std::shared_ptr<ClusterClient> client_;
};

}  // namespace moe::py_binding
