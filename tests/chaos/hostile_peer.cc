// The hostile peer's frames (see hostile_peer.h).
#include "tests/chaos/hostile_peer.h"

#include <capnp/message.h>

#include <chrono>
#include <functional>

#include "runtime/wire/envelope_util.h"
#include "runtime/wire/moe.capnp.h"
#include "tests/integration/raw_connection.h"

namespace moe::chaos {

namespace {

using integration::RawConnection;
using namespace std::chrono_literals;

constexpr const char* kWrongToken = "not-the-cluster-token";

std::string outcome(RawConnection& connection, capnp::MallocMessageBuilder& message) {
  if (!connection.write_message(message)) return "connection closed before the frame was written";
  RawConnection::Reply reply = connection.read_reply(1000ms);
  if (reply.kind == RawConnection::Reply::Kind::Closed) return "closed: " + reply.detail;
  if (reply.kind == RawConnection::Reply::Kind::Timeout) return "no reply in 1000 ms";
  auto e = reply.frame.envelope();
  if (e.which() == wire::Envelope::ERROR)
    return "error " + error_code_name(e.getError().getCode()) + ": " + e.getError().getMessage().cStr();
  return "a " + message_kind_name(e) + " reply";
}

void send(const std::string& address, const std::string& what, std::vector<std::string>& lines,
          const std::function<void(wire::Envelope::Builder)>& fill) {
  RawConnection connection(address);
  capnp::MallocMessageBuilder message;
  auto envelope = message.initRoot<wire::Envelope>();
  envelope.setRequestId(0xbad0 + lines.size());
  fill(envelope);
  lines.push_back(what + " -> " + address + ": " + outcome(connection, message));
}

}  // namespace

std::vector<std::string> send_hostile_frames(const std::string& worker, const std::string& coordinator, uint64_t epoch,
                                             const std::vector<uint32_t>& worker_ids, bool cluster_has_token) {
  std::vector<std::string> lines;
  const uint64_t ahead = epoch + 1000;
  send(worker, "prepare epoch " + std::to_string(ahead), lines, [&](wire::Envelope::Builder e) {
    auto p = e.initPrepare();
    p.setEpoch(ahead);
    auto load = p.initLoad(1);
    load[0].setLayer(0);
    load[0].setExpert(0);
    if (cluster_has_token) p.setClusterToken(kWrongToken);
  });
  send(worker, "commit of an empty placement, epoch " + std::to_string(ahead), lines, [&](wire::Envelope::Builder e) {
    auto c = e.initCommit();
    c.initPlacement().setEpoch(ahead);
    if (cluster_has_token) c.setClusterToken(kWrongToken);
  });
  send(worker, "release epoch " + std::to_string(ahead), lines, [&](wire::Envelope::Builder e) {
    auto r = e.initRelease();
    r.setEpoch(ahead);
    if (cluster_has_token) r.setClusterToken(kWrongToken);
  });
  for (uint32_t id : worker_ids)
    send(coordinator, "heartbeat as worker " + std::to_string(id) + " at epoch " + std::to_string(ahead), lines,
         [&](wire::Envelope::Builder e) {
           auto h = e.initHeartbeat();
           h.setWorkerId(id);
           h.setEpoch(ahead);
           h.setWindowMs(1000);
         });
  if (cluster_has_token)
    send(coordinator, "registration at " + worker + " with a wrong token", lines, [&](wire::Envelope::Builder e) {
      auto r = e.initRegisterWorker();
      r.setName("hostile");
      r.setAddress(worker);
      r.setBackend("cpu");
      r.initCapacity().setExpertSlots(64);
      r.setClusterToken(kWrongToken);
      r.setServingEpoch(ahead);
    });
  return lines;
}

}  // namespace moe::chaos
