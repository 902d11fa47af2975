// The moe_cluster._native extension: NativeCluster (the ClusterClient behind moe_cluster.Cluster) and
// NativeLocalCluster (the project's LocalCluster: a coordinator and N workers as real processes on
// 127.0.0.1, for serve-demo and the tests). Chosen binding: pybind11 (see the README, "From Python"): it is packaged by Debian (pybind11-dev) and PyPI, needs no build backend of its own,
// and its exception translators carry the C++ messages into Python classes.
#include <chrono>
#include <csignal>
#include <memory>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "python/src/binding_error.h"
#include "python/src/native_cluster.h"
#include "runtime/client/local_cluster.h"

namespace py = pybind11;
using moe::py_binding::NativeCluster;

namespace {

struct NativeLocalCluster {
  std::unique_ptr<moe::LocalCluster> cluster;

  moe::LocalCluster& get() {
    if (!cluster) throw moe::py_binding::BindingError("ClusterError", "the local cluster was stopped");
    return *cluster;
  }
};

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "C++ core of moe_cluster: the cluster client and the loopback cluster launcher";
  moe::py_binding::register_error_translator();

  py::class_<NativeCluster>(m, "NativeCluster")
      .def(py::init([](const std::string& address, const std::vector<std::string>& workers, const std::string& token,
                       const std::string& wire_dtype, std::optional<int64_t> deadline_ms, const std::string& token_file,
                       const std::string& tls_cert, const std::string& tls_key, const std::string& tls_ca) {
             return std::make_unique<NativeCluster>(address, workers, token, wire_dtype, deadline_ms, token_file,
                                                    moe::TlsFiles{tls_cert, tls_key, tls_ca});
           }),
           py::arg("address"), py::arg("workers"), py::arg("token"), py::arg("wire_dtype"), py::arg("deadline_ms"),
           py::arg("token_file") = "", py::arg("tls_cert") = "", py::arg("tls_key") = "", py::arg("tls_ca") = "")
      .def("model", &NativeCluster::model)
      .def("status", &NativeCluster::status)
      .def("stats", &NativeCluster::stats)
      .def("router_weights", &NativeCluster::router_weights, py::arg("layer"))
      .def("forward", &NativeCluster::forward, py::arg("layer"), py::arg("src"), py::arg("dtype"), py::arg("rows"),
           py::arg("hidden"), py::arg("dst"))
      .def("close", &NativeCluster::close)
      .def_property_readonly("closed", &NativeCluster::closed)
      .def_property_readonly("address", &NativeCluster::address);

  py::class_<NativeLocalCluster>(m, "NativeLocalCluster")
      .def(py::init([](const std::string& bin_dir, const std::string& model, int workers, int replicas,
                       const std::string& log_dir, const std::string& token, int lease_ms, int worker_threads,
                       const std::string& tls_cert, const std::string& tls_key, const std::string& tls_ca) {
             moe::LocalClusterOptions o;
             o.bin_dir = bin_dir;
             o.model = model;
             o.workers = workers;
             o.replicas = replicas;
             o.log_dir = log_dir;
             o.lease_ms = static_cast<uint32_t>(lease_ms);
             o.worker_threads = worker_threads;
             o.tls = moe::TlsFiles{tls_cert, tls_key, tls_ca};
             if (!token.empty()) {
               o.coordinator_args = {"--cluster-token", token};
               o.worker_args = {"--cluster-token", token};
               o.cluster_token = token;
             }
             auto c = std::make_unique<NativeLocalCluster>();
             c->cluster = std::make_unique<moe::LocalCluster>(o);
             return c;
           }),
           py::arg("bin_dir"), py::arg("model"), py::arg("workers"), py::arg("replicas"), py::arg("log_dir"),
           py::arg("token"), py::arg("lease_ms"), py::arg("worker_threads"), py::arg("tls_cert") = "",
           py::arg("tls_key") = "", py::arg("tls_ca") = "")
      .def_property_readonly("address",
                             [](NativeLocalCluster& c) { return c.get().coordinator_address(); })
      .def("wait_ready",
           [](NativeLocalCluster& c, int64_t timeout_ms) {
             auto& cluster = c.get();
             py::gil_scoped_release release;
             return cluster.wait_ready(std::chrono::milliseconds(timeout_ms));
           },
           py::arg("timeout_ms"))
      .def_property_readonly("worker_count", [](NativeLocalCluster& c) { return c.get().worker_count(); })
      .def("worker_pid", [](NativeLocalCluster& c, size_t i) { return c.get().worker(i).pid(); })
      .def("kill_worker", [](NativeLocalCluster& c, size_t i) { c.get().worker(i).kill_now(); },
           "SIGKILL worker i and reap it")
      .def("stop", [](NativeLocalCluster& c) {
        std::unique_ptr<moe::LocalCluster> last = std::move(c.cluster);
        py::gil_scoped_release release;
        last.reset();
      });
}
