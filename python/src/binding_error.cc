// C++ exception -> moe_cluster.errors class (see binding_error.h).
#include "python/src/binding_error.h"

#include <exception>

#include "runtime/client/cluster_client.h"
#include "runtime/model/model_error.h"
#include "runtime/net/net_error.h"
#include "runtime/wire/wire_error.h"

namespace py = pybind11;

namespace moe::py_binding {

namespace {

void raise_as(const char* python_class, const char* message) {
  py::object errors = py::module_::import("moe_cluster.errors");
  py::object cls = errors.attr(python_class);
  PyErr_SetObject(cls.ptr(), py::str(message).ptr());
}

// The client reports a worker's or coordinator's `unauthorized` reply inside its message.
bool says_unauthorized(const std::string& message) { return message.find("unauthorized") != std::string::npos; }

}  // namespace

void register_error_translator() {
  py::register_exception_translator([](std::exception_ptr p) {
    if (!p) return;
    try {
      std::rethrow_exception(p);
    } catch (const BindingError& e) {
      raise_as(e.python_class().c_str(), e.what());
    } catch (const ClusterUnavailableError& e) {
      raise_as("Unavailable", e.what());
    } catch (const ClusterDeadlineError& e) {
      raise_as(says_unauthorized(e.what()) ? "Unauthorized" : "DeadlineExceeded", e.what());
    } catch (const ClusterError& e) {
      raise_as(says_unauthorized(e.what()) ? "Unauthorized" : "ClusterError", e.what());
    } catch (const RemoteError& e) {
      raise_as(e.code() == wire::ErrorCode::UNAUTHORIZED ? "Unauthorized" : "ClusterError", e.what());
    } catch (const NetError& e) {
      raise_as(e.kind() == NetError::Kind::BadAddress ? "InvalidArgument" : "Unreachable", e.what());
    } catch (const ModelError& e) {
      raise_as("ClusterError", e.what());
    } catch (const WireError& e) {
      raise_as("ClusterError", e.what());
    } catch (const std::invalid_argument& e) {
      raise_as("InvalidArgument", e.what());
    }
  });
}

}  // namespace moe::py_binding
