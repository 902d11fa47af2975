// Asking a list of peers (the coordinator, then workers) for the same metadata request (getModel,
// getPlacement) in order, until one gives a reply the caller accepts. Every refusal is kept with its
// peer's address, so that a caller which got nothing can say what each peer answered.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/client/peer_links.h"
#include "runtime/wire/framing.h"
#include "runtime/wire/moe.capnp.h"

namespace moe {

struct MetadataReply {
  std::optional<Frame> reply;         // the accepted reply, if any
  std::string from;                   // its peer's address
  std::vector<std::string> failures;  // "ADDRESS: what went wrong", in asking order
  bool not_ready = false;             // some peer answered notReady (it may have it later)
  bool refused = false;               // some peer answered an error other than notReady
};

// `fill` sets the request's kind; `accept` may turn down a reply (its reason goes to failures) and may
// throw (WireError and the like count as a failure of that peer). Never throws for a failing peer.
MetadataReply fetch_metadata(PeerLinks& links, const std::vector<std::string>& peers,
                             const std::function<void(wire::Envelope::Builder)>& fill,
                             wire::Envelope::Which expected, std::chrono::milliseconds timeout,
                             const std::function<std::optional<std::string>(const std::string& peer, const Frame&)>& accept,
                             std::string_view cluster_token = {});

// "a: x; b: y" of MetadataReply::failures.
std::string join_failures(const std::vector<std::string>& failures);

}  // namespace moe
