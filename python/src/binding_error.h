// Errors of the binding itself, and the translation of every C++ error the runtime throws into the
// Python exception classes of moe_cluster.errors (ClusterError and its subclasses), keeping the C++
// message.
#pragma once

#include <stdexcept>
#include <string>

#include <pybind11/pybind11.h>

namespace moe::py_binding {

// Raised as moe_cluster.errors.<python_class>(message).
class BindingError : public std::runtime_error {
 public:
  BindingError(std::string python_class, const std::string& message)
      : std::runtime_error(message), python_class_(std::move(python_class)) {}
  const std::string& python_class() const { return python_class_; }

 private:
  std::string python_class_;
};

// Registers the translator with pybind11 (once, at module import).
void register_error_translator();

}  // namespace moe::py_binding
