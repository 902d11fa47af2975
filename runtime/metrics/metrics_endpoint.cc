// Serves a registry with MetricsHttpServer and records moe_build_info.
#include "runtime/metrics/metrics_endpoint.h"

#include <prometheus/gauge.h>

#include <stdexcept>

namespace moe {

MetricsEndpoint::MetricsEndpoint(const std::string& host, uint16_t port, const std::string& component,
                                 const std::string& backend, std::string bearer_token,
                                 std::shared_ptr<boost::asio::ssl::context> tls)
    : registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::BuildGauge()
      .Name("moe_build_info")
      .Help("Build information of this moe-cluster process (value is always 1)")
      .Register(*registry_)
      .Add({{"version", MOE_VERSION}, {"component", component}, {"backend", backend}})
      .Set(1);
  if (port == 0) return;
  server_ = std::make_unique<MetricsHttpServer>(host, port, registry_, std::move(bearer_token), std::move(tls));
}

MetricsEndpoint::~MetricsEndpoint() = default;

uint16_t MetricsEndpoint::port() const { return server_ ? server_->port() : 0; }

}  // namespace moe
