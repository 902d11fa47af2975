// Sends a typed `error` reply (ServiceError: code, message, epoch, retryable), counts it in
// moe_worker_errors_total{code} and logs one line naming the request.
#pragma once

#include <string>

#include "runtime/net/connection.h"
#include "runtime/wire/service_error.h"
#include "worker/worker_metrics.h"

namespace moe {

// `what` names the request for the log, e.g. "forwardRequest".
void send_error_reply(const Responder& responder, const ServiceError& error, WorkerMetrics& metrics,
                      const std::string& what);

}  // namespace moe
