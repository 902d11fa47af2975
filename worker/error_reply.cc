// Error replies of the worker (see error_reply.h).
#include "worker/error_reply.h"

#include <capnp/message.h>

#include "runtime/wire/envelope_util.h"
#include "worker/worker_log.h"

namespace moe {

void send_error_reply(const Responder& responder, const ServiceError& error, WorkerMetrics& metrics,
                      const std::string& what) {
  metrics.count_error(error.code());
  worker_log(what + " " + std::to_string(responder.request_id()) + " failed: " + error_code_name(error.code()) + ": " +
             error.what());
  capnp::MallocMessageBuilder message;
  set_service_error(message.initRoot<wire::Envelope>(), error);
  responder.reply(message);
}

}  // namespace moe
