// Serves a registry with prometheus-cpp's Exposer and records moe_build_info.
#include "runtime/metrics/metrics_endpoint.h"

#include <prometheus/exposer.h>
#include <prometheus/gauge.h>

#include <stdexcept>

namespace moe {

MetricsEndpoint::MetricsEndpoint(const std::string& host, uint16_t port, const std::string& component,
                                 const std::string& backend)
    : registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::BuildGauge()
      .Name("moe_build_info")
      .Help("Build information of this moe-cluster process (value is always 1)")
      .Register(*registry_)
      .Add({{"version", MOE_VERSION}, {"component", component}, {"backend", backend}})
      .Set(1);
  if (port == 0) return;
  std::string address = host + ":" + std::to_string(port);
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(address, 2);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot serve /metrics on " + address + ": " + e.what());
  }
  exposer_->RegisterCollectable(registry_);
}

MetricsEndpoint::~MetricsEndpoint() = default;

uint16_t MetricsEndpoint::port() const {
  if (!exposer_) return 0;
  auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : static_cast<uint16_t>(ports.front());
}

}  // namespace moe
