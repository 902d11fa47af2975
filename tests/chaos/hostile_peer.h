// The chaos suite's hostile peer: a stranger (no cluster token, or a wrong one) that opens raw
// connections (tests/integration/raw_connection.h) and sends well-formed control frames that look like
// the coordinator's or a worker's: to a worker a prepare, a commit of an empty placement and a release,
// all for an epoch far ahead; to the coordinator heartbeats in every worker's name claiming that epoch
// and, when the cluster has a token, a registration at a real worker's address. The cluster must shrug
// them off: answered calls stay right and service stays up.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moe::chaos {

// Sends the frames and returns one line per frame: what it was and what came back (error code, reply
// kind, closed, or nothing within the timeout). Throws when a connection cannot be opened.
std::vector<std::string> send_hostile_frames(const std::string& worker_address, const std::string& coordinator_address,
                                             uint64_t epoch, const std::vector<uint32_t>& worker_ids, bool cluster_has_token);

}  // namespace moe::chaos
