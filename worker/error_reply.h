// Sends a typed `error` reply, counts it in moe_worker_errors_total and logs one line naming the request.
#pragma once

#include <string>

#include "runtime/net/connection.h"
#include "worker/request_error.h"
#include "worker/worker_metrics.h"

namespace moe {

// `what` names the request for the log, e.g. "forwardRequest".
void send_error_reply(const Responder& responder, const RequestError& error, WorkerMetrics& metrics,
                      const std::string& what);

}  // namespace moe
