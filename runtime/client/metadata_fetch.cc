// fetch_metadata: ask each peer in turn (see metadata_fetch.h).
#include "runtime/client/metadata_fetch.h"

#include <capnp/message.h>

#include "runtime/net/net_error.h"
#include "runtime/wire/envelope_util.h"
#include "runtime/wire/wire_error.h"

namespace moe {

MetadataReply fetch_metadata(PeerLinks& links, const std::vector<std::string>& peers,
                             const std::function<void(wire::Envelope::Builder)>& fill,
                             wire::Envelope::Which expected, std::chrono::milliseconds timeout,
                             const std::function<std::optional<std::string>(const std::string& peer, const Frame&)>& accept,
                             std::string_view cluster_token) {
  MetadataReply result;
  for (const std::string& peer : peers) {
    try {
      capnp::MallocMessageBuilder request;
      fill(request.initRoot<wire::Envelope>());
      auto connection = links.get(peer);
      Frame reply = call_peer(*connection, request, timeout, expected, cluster_token);
      if (std::optional<std::string> refusal = accept(peer, reply)) {
        result.failures.push_back(peer + ": " + *refusal);
        continue;
      }
      result.reply = std::move(reply);
      result.from = peer;
      return result;
    } catch (const RemoteError& e) {
      (e.code() == wire::ErrorCode::NOT_READY ? result.not_ready : result.refused) = true;
      result.failures.push_back(peer + ": " + error_code_name(e.code()) + ": " + e.remote_message());
    } catch (const std::exception& e) {  // NetError, WireError, a reply that does not decode
      result.failures.push_back(peer + ": " + e.what());
    }
  }
  return result;
}

std::string join_failures(const std::vector<std::string>& failures) {
  std::string text;
  for (const std::string& f : failures) text += (text.empty() ? "" : "; ") + f;
  return text.empty() ? "no peer to ask" : text;
}

}  // namespace moe
